"""A real Slurm on loopback: munged, slurmctld and one slurmd with two fake GPUs, started as root.

Fixture: ``slurm_cluster`` (session-wide). The GPUs are character devices made with ``mknod`` in a
temp dir (``gres.conf`` needs ``File=`` entries), so jobs see ``CUDA_VISIBLE_DEVICES`` as on a real
node. Everything is torn down at the end, also when a start fails. With
``GPULEDGER_REQUIRE_SLURM=1`` (CI) missing daemons or no root fail instead of skipping.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

NODE = "gnode0"
PARTITION = "gpu"
GPUS = 2
DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/mungekey")
START_TIMEOUT_S = 30.0


SLURM_PORTS = range(20_000, 30_000)  # below Linux's ephemeral range (32768 and up)


def _free_port() -> int:
    """A free port outside the ephemeral range: the daemons bind it later (and again after a restart),
    and a port the kernel hands out for connections, to the other test workers' clients and servers too,
    could be taken in between ("Address already in use")."""
    for port in random.sample(SLURM_PORTS, 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port for the Slurm daemons in 20000-29999")


def _slurm_conf(root: Path, ctld_port: int, slurmd_port: int) -> str:
    return f"""\
ClusterName=gpuledger
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
GresTypes=gpu
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SlurmdParameters=config_overrides
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmctldTimeout=300
SlurmdTimeout=300
NodeName={NODE} NodeHostname={socket.gethostname()} NodeAddr=127.0.0.1 CPUs=4 RealMemory=1000 Gres=gpu:{GPUS}
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""


class SlurmCluster:
    """The daemons of one test cluster and the environment its clients need (``SLURM_CONF``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.partition, self.node, self.gpus = PARTITION, NODE, GPUS

    def write_config(self) -> None:
        for sub in ("munge", "state", "spool", "dev"):
            (self.root / sub).mkdir(mode=0o700)
        devices = []
        for index in range(GPUS):
            device = self.root / "dev" / f"nvidia{index}"
            os.mknod(device, 0o600 | 0o020000, os.makedev(1, 3))  # a character device (what /dev/null is)
            devices.append(f"NodeName={NODE} Name=gpu File={device}")
        (self.root / "gres.conf").write_text("\n".join(devices) + "\n")
        self.conf.write_text(_slurm_conf(self.root, _free_port(), _free_port()))

    def start(self) -> None:
        munge = self.root / "munge"
        subprocess.run(["/usr/sbin/mungekey", "--create", "--keyfile", str(munge / "munge.key")], check=True)
        os.chmod(munge / "munge.key", 0o400)
        self._spawn(
            "munged",
            [
                "/usr/sbin/munged",
                "-F",
                "--force",
                f"--socket={munge}/munge.socket",
                f"--key-file={munge}/munge.key",
                f"--pid-file={munge}/munged.pid",
                f"--log-file={munge}/munged.log",
                f"--seed-file={munge}/seed",
            ],
        )
        self._wait(lambda: (munge / "munge.socket").exists(), "munged")
        self.start_controller()
        self._spawn("slurmd", ["/usr/sbin/slurmd", "-D", "-f", str(self.conf)])
        self._wait(self._node_idle, "slurmd (node idle)")

    def start_controller(self) -> None:
        self._spawn("slurmctld", ["/usr/sbin/slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._wait(self._controller_answers, "slurmctld")

    def stop_controller(self) -> None:
        self._stop("slurmctld")

    def command(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=30, check=False)

    def jobs_named(self, name: str) -> list[str]:
        out = self.command("squeue", "-h", "-t", "all", "-n", name, "-o", "%i").stdout
        return out.split()

    def memory_of(self, slurm_id: str) -> str:
        """The memory the job asked Slurm for (squeue's MIN_MEMORY, e.g. ``300M``)."""
        return self.command("squeue", "-h", "-t", "all", "-j", slurm_id, "-o", "%m").stdout.strip()

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.root / f"{name}.out").open("ab")
        self.processes[name] = subprocess.Popen(
            argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
        log.close()

    def _wait(self, ready: object, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if ready():  # type: ignore[operator]
                return
            time.sleep(0.2)
        raise RuntimeError(f"{what} did not come up; see {self.root}")

    def _controller_answers(self) -> bool:
        return self.command("scontrol", "ping").stdout.find("UP") >= 0

    def _node_idle(self) -> bool:
        return self.command("sinfo", "-h", "-n", NODE, "-o", "%T").stdout.strip() == "idle"

    def _stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.command("scancel", "--full", "-u", "root")
        for name in ("slurmd", "slurmctld", "munged"):
            self._stop(name)


def _unavailable(message: str) -> None:
    if os.environ.get("GPULEDGER_REQUIRE_SLURM") == "1":
        pytest.fail(f"{message} and GPULEDGER_REQUIRE_SLURM=1")
    pytest.skip(message)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    missing = [d for d in DAEMONS if not Path(d).exists()] + [c for c in ("sbatch", "squeue") if not shutil.which(c)]
    if missing:
        _unavailable(f"Slurm is not installed (missing {', '.join(missing)})")
    if os.geteuid() != 0:
        _unavailable("the Slurm fixture runs its daemons as root")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.write_config()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
