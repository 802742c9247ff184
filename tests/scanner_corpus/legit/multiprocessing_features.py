import multiprocessing as mp

import numpy as np
import pandas as pd


def compute_features(chunk):
    out = pd.DataFrame(index=chunk.index)
    out["log_amount"] = np.log1p(chunk["amount"].clip(lower=0))
    out["hour"] = pd.to_datetime(chunk["ts"]).dt.hour
    return out


if __name__ == "__main__":
    frame = pd.read_csv("transactions.csv")
    chunks = np.array_split(frame, mp.cpu_count())
    with mp.Pool(processes=mp.cpu_count()) as pool:
        parts = pool.map(compute_features, chunks)
    features = pd.concat(parts)
    features.to_csv("features.csv")
    print(features.describe())
