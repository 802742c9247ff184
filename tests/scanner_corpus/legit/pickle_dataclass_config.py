import pickle
from dataclasses import dataclass, field

import numpy as np
from sklearn.naive_bayes import GaussianNB


@dataclass(frozen=True)
class Config:
    seed: int = 0
    classes: list = field(default_factory=lambda: [0, 1, 2])


cfg = Config()
rng = np.random.default_rng(cfg.seed)
X = rng.normal(size=(300, 4))
y = rng.choice(cfg.classes, size=300)
model = GaussianNB().fit(X, y)
with open("model.pkl", "wb") as f:
    pickle.dump({"config": cfg, "model": model}, f)
print("train accuracy", (model.predict(X) == y).mean())
