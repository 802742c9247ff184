"""CUDA-safe spawn workers, a sibling module on sys.path, platform info and an asyncio event loop."""

import asyncio
import multiprocessing as mp
import os
import platform
import sys
import types
import uuid

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
RUN_ID = uuid.uuid4().hex


def square(x):
    return x * x


async def gather_scores(values):
    loop = asyncio.get_running_loop()
    return await asyncio.gather(*(loop.run_in_executor(None, square, v) for v in values))


def main():
    from features import build_features  # the submission's own module, next to this file

    print(platform.system(), platform.python_version(), RUN_ID)
    mp.set_start_method("spawn", force=True)
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        squares = pool.map(square, range(8))
    scores = asyncio.run(gather_scores(squares))
    assert isinstance(square, types.FunctionType)
    np.save(f"features_{RUN_ID}.npy", build_features(np.asarray(scores)))
    os.replace(f"features_{RUN_ID}.npy", "features.npy")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
