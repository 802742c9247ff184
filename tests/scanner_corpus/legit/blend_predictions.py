import glob

import pandas as pd
from scipy.stats import rankdata

frames = [pd.read_csv(path) for path in sorted(glob.glob("predictions/*.csv"))]
print(f"blending {len(frames)} prediction files")
blend = frames[0][["id"]].copy()
blend["target"] = sum(rankdata(f["target"]) / len(f) for f in frames) / len(frames)
blend.to_csv("submission.csv", index=False)
print(blend.describe())
