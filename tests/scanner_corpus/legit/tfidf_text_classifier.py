import re

import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

URL = re.compile(r"https?://\\S+")


def clean(text):
    return URL.sub(" ", text.lower())


df = pd.read_csv("train.csv")
df["text"] = df["text"].map(clean)
X_tr, X_va, y_tr, y_va = train_test_split(df["text"], df["label"], test_size=0.1, random_state=0)
vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
clf = SGDClassifier(loss="modified_huber", alpha=1e-5, random_state=0)
clf.fit(vec.fit_transform(X_tr), y_tr)
print("macro f1", f1_score(y_va, clf.predict(vec.transform(X_va)), average="macro"))

test = pd.read_csv("test.csv")
test["label"] = clf.predict(vec.transform(test["text"].map(clean)))
test[["id", "label"]].to_csv("submission.csv", index=False)
