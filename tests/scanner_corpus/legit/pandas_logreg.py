"""Titanic-style baseline: logistic regression on a few numeric features."""

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

train = pd.read_csv("train.csv")
test = pd.read_csv("test.csv")

features = ["Pclass", "Age", "SibSp", "Parch", "Fare"]
for frame in (train, test):
    frame["Age"] = frame["Age"].fillna(train["Age"].median())
    frame["Fare"] = frame["Fare"].fillna(train["Fare"].median())

model = LogisticRegression(max_iter=1000)
scores = cross_val_score(model, train[features], train["Survived"], cv=5)
print(f"cv accuracy: {np.mean(scores):.4f} +/- {np.std(scores):.4f}")

model.fit(train[features], train["Survived"])
submission = pd.DataFrame({"PassengerId": test["PassengerId"], "Survived": model.predict(test[features])})
submission.to_csv("submission.csv", index=False)
