"""Resumes from its own checkpoint: torch.save/torch.load of .pth files, pickle of its own state."""

import gc
import os
import pickle
from pathlib import Path

import torch
from torch import nn

out = Path(os.environ.get("OUT_DIR", "checkpoints"))
out.mkdir(exist_ok=True)
model = nn.Linear(16, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
start = 0
if (out / "last.pth").exists():
    state = torch.load(out / "last.pth", map_location="cpu")
    model.load_state_dict(state["model"])
    with open(out / "history.pkl", "rb") as f:
        history = pickle.load(f)
    start = history["epoch"] + 1
else:
    history = {"epoch": -1, "loss": []}

best = pickle.loads(pickle.dumps(model.state_dict()))  # a deep copy of the weights
for epoch in range(start, start + 3):
    x, y = torch.randn(64, 16), torch.randn(64, 1)
    loss = nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    history["loss"].append(loss.item())
    history["epoch"] = epoch
    torch.save({"model": model.state_dict()}, out / "last.pth")
    torch.save(best, os.path.join(out, f"best_{epoch}.pth"))
    with open(out / "history.pkl", "wb") as f:
        pickle.dump(history, f)
    gc.collect()
    torch.cuda.empty_cache()
print("Training done.")
