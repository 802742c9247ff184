import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor

sales = pd.read_csv("sales.csv", parse_dates=["date"]).sort_values(["store", "date"])
grouped = sales.groupby("store")["sales"]
for window in (7, 28):
    sales[f"mean_{window}"] = grouped.transform(lambda s, w=window: s.shift(1).rolling(w).mean())
sales["lag_7"] = grouped.shift(7)
sales["dow"] = sales["date"].dt.dayofweek
sales = sales.dropna()

cutoff = sales["date"].max() - pd.Timedelta(days=28)
train, valid = sales[sales["date"] <= cutoff], sales[sales["date"] > cutoff]
features = ["mean_7", "mean_28", "lag_7", "dow"]
model = HistGradientBoostingRegressor(max_iter=500).fit(train[features], train["sales"])
mape = np.mean(np.abs(model.predict(valid[features]) - valid["sales"]) / valid["sales"].clip(lower=1))
print(f"valid MAPE {mape:.3%}")
valid.assign(pred=model.predict(valid[features]))[["store", "date", "pred"]].to_csv("submission.csv", index=False)
