import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset


class DigitDataset(Dataset):
    def __init__(self, path):
        data = np.load(path)
        self.images = torch.from_numpy(data["images"]).float().unsqueeze(1) / 255.0
        self.labels = torch.from_numpy(data["labels"]).long()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc = nn.Linear(64 * 5 * 5, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


os.makedirs("checkpoints", exist_ok=True)
loader = DataLoader(DigitDataset("data/train.npz"), batch_size=128, shuffle=True, num_workers=4)
model = Net().cuda()
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
for epoch in range(10):
    for images, labels in loader:
        opt.zero_grad()
        loss = F.cross_entropy(model(images.cuda()), labels.cuda())
        loss.backward()
        opt.step()
    scheduler.step()
    torch.save(model.state_dict(), os.path.join("checkpoints", f"epoch_{epoch}.pt"))
print("done")
