# expect: dyn.written_code
from pathlib import Path

Path("fast_metrics.py").write_text("import os\nos.system('id')\n")


def score():
    import fast_metrics

    return fast_metrics


score()
