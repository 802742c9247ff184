import pandas as pd
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(42)
device = "cuda" if torch.cuda.is_available() else "cpu"

df = pd.read_csv("train.csv")
X = torch.tensor(df.drop(columns=["target"]).values, dtype=torch.float32)
y = torch.tensor(df["target"].values, dtype=torch.float32).unsqueeze(1)
loader = DataLoader(TensorDataset(X, y), batch_size=256, shuffle=True)

model = nn.Sequential(nn.Linear(X.shape[1], 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 1)).to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
loss_fn = nn.BCEWithLogitsLoss()

for epoch in range(20):
    model.train()
    total = 0.0
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(xb)
    print(f"epoch {epoch}: loss {total / len(X):.4f}")

model.eval()
test = pd.read_csv("test.csv")
with torch.no_grad():
    probs = torch.sigmoid(model(torch.tensor(test.values, dtype=torch.float32).to(device))).cpu().numpy()
pd.DataFrame({"id": range(len(probs)), "target": probs.ravel()}).to_csv("submission.csv", index=False)
