from pathlib import Path

import numpy as np
import pandas as pd
from scipy.io import wavfile
from tqdm import tqdm

rows = []
for path in tqdm(sorted(Path("audio").glob("*.wav"))):
    rate, signal = wavfile.read(path)
    signal = signal.astype(np.float32) / np.iinfo(np.int16).max
    spectrum = np.abs(np.fft.rfft(signal))
    rows.append(
        {
            "file": path.name,
            "rms": float(np.sqrt(np.mean(signal**2))),
            "centroid": float((spectrum * np.arange(len(spectrum))).sum() / spectrum.sum()),
            "rate": rate,
        }
    )
features = pd.DataFrame(rows)
features.to_csv("submission.csv", index=False)
print(features.head())
