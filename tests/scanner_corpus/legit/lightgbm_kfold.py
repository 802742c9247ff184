import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

train = pd.read_csv("input/train.csv")
test = pd.read_csv("input/test.csv")
target = train.pop("target")
params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 63, "verbose": -1}

oof = np.zeros(len(train))
preds = np.zeros(len(test))
folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
for fold, (tr, va) in enumerate(folds.split(train, target)):
    booster = lgb.train(
        params,
        lgb.Dataset(train.iloc[tr], target.iloc[tr]),
        num_boost_round=2000,
        valid_sets=[lgb.Dataset(train.iloc[va], target.iloc[va])],
        callbacks=[lgb.early_stopping(100), lgb.log_evaluation(200)],
    )
    oof[va] = booster.predict(train.iloc[va])
    preds += booster.predict(test) / folds.n_splits
    print(f"fold {fold}: auc {roc_auc_score(target.iloc[va], oof[va]):.5f}")

print("oof auc", roc_auc_score(target, oof))
pd.DataFrame({"id": test.index, "target": preds}).to_csv("submission.csv", index=False)
