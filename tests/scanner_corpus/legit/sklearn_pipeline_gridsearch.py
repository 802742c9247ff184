import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

train = pd.read_csv("train.csv")
y = train.pop("label")
numeric = train.select_dtypes("number").columns.tolist()
categorical = [c for c in train.columns if c not in numeric]

pre = ColumnTransformer(
    [
        ("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric),
        (
            "cat",
            Pipeline(
                [
                    ("impute", SimpleImputer(strategy="most_frequent")),
                    ("onehot", OneHotEncoder(handle_unknown="ignore")),
                ]
            ),
            categorical,
        ),
    ]
)
pipe = Pipeline([("pre", pre), ("clf", RandomForestClassifier(n_jobs=-1, random_state=0))])
search = GridSearchCV(pipe, {"clf__n_estimators": [200, 500], "clf__max_depth": [None, 12]}, cv=3, n_jobs=-1)
search.fit(train, y)
print("best params:", search.best_params_, "score:", round(search.best_score_, 4))

test = pd.read_csv("test.csv")
pd.DataFrame({"id": test["id"], "label": search.predict(test)}).to_csv("submission.csv", index=False)
