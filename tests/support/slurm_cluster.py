"""A real one-node Slurm cluster on 127.0.0.1, started and stopped by the test suite.

systemd is not PID 1 on these machines, so munged, slurmctld and slurmd are started by hand
with every state, spool, log and pid file in a scratch directory, and stopped by their pids.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["LocalSlurmCluster", "slurm_available"]

_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")


def slurm_available() -> bool:
    """True when the Slurm and munge binaries are installed (Debian packages)."""
    return all(shutil.which(name) for name in _BINARIES)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalSlurmCluster:
    """Start munged, slurmctld and slurmd in ``root``; ``env`` points clients at them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.munge_socket = root / "munge" / "munge.socket"
        self._munge_pid = root / "run" / "munged.pid"
        self._daemons: list[subprocess.Popen[bytes]] = []

    @property
    def env(self) -> dict[str, str]:
        """Environment for sbatch/squeue/scancel (and law's Slurm workflow) to use this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        for sub in ("munge", "state", "spool", "log", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        memory_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        cpus = os.cpu_count() or 1
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=minerflow-test",
                    "SlurmctldHost=localhost(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny",
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "SchedulerParameters=sched_interval=2",
                    "MinJobAge=600",
                    "ReturnToService=2",
                    "MpiDefault=none",
                    f"StateSaveLocation={self.root / 'state'}",
                    f"SlurmdSpoolDir={self.root / 'spool'}",
                    f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
                    f"SlurmctldPidFile={self.root / 'run' / 'slurmctld.pid'}",
                    f"SlurmdPidFile={self.root / 'run' / 'slurmd.pid'}",
                    f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} "
                    f"RealMemory={memory_mib} State=UNKNOWN",
                    "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )

    def start(self, timeout: float = 60.0) -> None:
        """Start the daemons and wait until the node accepts jobs."""
        self._write_config()
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        subprocess.run(
            [
                "munged",
                "--force",
                f"--key-file={key}",
                f"--socket={self.munge_socket}",
                f"--pid-file={self._munge_pid}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
                f"--seed-file={self.root / 'munge' / 'munged.seed'}",
            ],
            check=True,
            capture_output=True,
        )
        env = {**os.environ, **self.env}
        for daemon in (["slurmctld", "-i"], ["slurmd", "-N", "localhost"]):
            self._daemons.append(
                subprocess.Popen(
                    [*daemon, "-D", "-f", str(self.conf)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = subprocess.run(
                ["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True
            ).stdout.strip()
            if state in {"idle", "mix", "alloc"}:
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"Slurm did not come up within {timeout} s; logs in {self.root / 'log'}")

    def stop(self) -> None:
        """Stop the Slurm daemons (whole process groups, job steps included), then munged."""
        for daemon in reversed(self._daemons):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()
        self._daemons.clear()
        if self._munge_pid.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(self._munge_pid.read_text().split()[0]), signal.SIGTERM)
