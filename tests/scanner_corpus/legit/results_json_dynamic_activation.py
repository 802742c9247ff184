import json

import torch
from torch import nn

CONFIG = {"activation": "ReLU", "hidden": [256, 128], "dropout": 0.2}


def make_mlp(in_features, out_features, cfg):
    layers, width = [], in_features
    for hidden in cfg["hidden"]:
        layers += [nn.Linear(width, hidden), getattr(nn, cfg["activation"])(), nn.Dropout(cfg["dropout"])]
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


model = make_mlp(32, 3, CONFIG)
x = torch.randn(16, 32)
logits = model(x)
results = {"params": sum(p.numel() for p in model.parameters()), "mean_logit": logits.mean().item()}
with open("results.json", "w") as f:
    json.dump(results, f, indent=2)
print(json.dumps(results))
