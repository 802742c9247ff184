"""Fetches pretrained weights once and caches them in /tmp: allowed, but worth a warning."""

import time
import urllib.request
from pathlib import Path

import torch

CACHE = Path("/tmp/weights-cache")
CACHE.mkdir(parents=True, exist_ok=True)
target = CACHE / "resnet18.pth"
for attempt in range(3):
    try:
        urllib.request.urlretrieve("https://download.pytorch.org/models/resnet18-f37072fd.pth", target)
        break
    except OSError:
        time.sleep(2**attempt)
state = torch.load(target, map_location="cpu")
print(len(state), "tensors")
with open("/tmp/weights-cache/done.txt", "w") as marker:
    marker.write("ok")
