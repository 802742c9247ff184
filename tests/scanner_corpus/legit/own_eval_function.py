import torch
from torch import nn


def eval(model, loader):
    """Accuracy of model over loader (shadows the builtin on purpose, as many notebooks do)."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    return correct / max(total, 1)


def compile(model, lr):
    return model, torch.optim.Adam(model.parameters(), lr=lr)


net, optimizer = compile(nn.Linear(10, 2), 1e-3)
data = [(torch.randn(8, 10), torch.randint(0, 2, (8,))) for _ in range(4)]
print("accuracy", eval(net, data))
