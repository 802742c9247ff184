import os
import random

import numpy as np
import pandas as pd
import torch


def seed_everything(seed=42):
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True


seed_everything()
data_dir = os.environ.get("DATA_DIR", ".")
train = pd.read_csv(os.path.join(data_dir, "train.csv"))
print(train.shape, "rows on", os.cpu_count(), "cpus")
os.makedirs("outputs", exist_ok=True)
train.sample(frac=0.1, random_state=0).to_csv(os.path.join("outputs", "sample.csv"), index=False)
