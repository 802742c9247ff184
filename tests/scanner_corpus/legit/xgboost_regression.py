import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.model_selection import train_test_split

df = pd.read_parquet("train.parquet")
X = df.drop(columns=["price"])
y = np.log1p(df["price"])
X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=0.2, random_state=1)

model = xgb.XGBRegressor(
    n_estimators=3000,
    learning_rate=0.03,
    max_depth=8,
    subsample=0.8,
    colsample_bytree=0.8,
    tree_method="hist",
    device="cuda",
    early_stopping_rounds=200,
)
model.fit(X_tr, y_tr, eval_set=[(X_va, y_va)], verbose=500)
rmse = np.sqrt(np.mean((model.predict(X_va) - y_va) ** 2))
print(f"validation rmsle: {rmse:.5f}")

test = pd.read_parquet("test.parquet")
pd.DataFrame({"id": test["id"], "price": np.expm1(model.predict(test))}).to_csv("submission.csv", index=False)
