import torch
from torch import nn


def build(compile=True):
    model = nn.Sequential(nn.Linear(512, 2048), nn.GELU(), nn.Linear(2048, 512)).cuda()
    if compile and hasattr(torch, "compile"):
        model = torch.compile(model)
    return model


model = build()
compiled_fn = getattr(torch, "compile", None)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
for step in range(100):
    x = torch.randn(64, 512, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = (model(x) - x).pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if step % 20 == 0:
        print(step, loss.item(), torch.cuda.max_memory_allocated() // 2**20, "MiB")
