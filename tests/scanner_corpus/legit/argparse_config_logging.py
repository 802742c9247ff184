import argparse
import json
import logging
from pathlib import Path

import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
log = logging.getLogger("solution")

parser = argparse.ArgumentParser()
parser.add_argument("--config", default="config.json")
parser.add_argument("--out", default="working")
args = parser.parse_args()

config = json.loads(Path(args.config).read_text()) if Path(args.config).exists() else {}
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

train = pd.read_csv("train.csv")
model = GradientBoostingClassifier(**config.get("model", {}))
model.fit(train.drop(columns=["y"]), train["y"])
log.info("train accuracy %.4f", model.score(train.drop(columns=["y"]), train["y"]))
(out / "params.json").write_text(json.dumps(model.get_params(), default=str, indent=2))
test = pd.read_csv("test.csv")
pd.DataFrame({"id": test.index, "y": model.predict(test)}).to_csv(out / "submission.csv", index=False)
