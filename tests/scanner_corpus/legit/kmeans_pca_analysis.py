import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score

data = pd.read_csv("customers.csv").select_dtypes("number").fillna(0)
scaled = (data - data.mean()) / data.std()
embedding = PCA(n_components=2, random_state=0).fit_transform(scaled)

scores = {}
for k in range(2, 9):
    labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(scaled)
    scores[k] = silhouette_score(scaled, labels)
best = max(scores, key=scores.get)
print("silhouette by k:", {k: round(v, 3) for k, v in scores.items()}, "best:", best)

labels = KMeans(n_clusters=best, n_init=10, random_state=0).fit_predict(scaled)
plt.scatter(embedding[:, 0], embedding[:, 1], c=labels, s=4)
plt.savefig("clusters.png", dpi=120)
pd.DataFrame({"customer": np.arange(len(labels)), "cluster": labels}).to_csv("submission.csv", index=False)
