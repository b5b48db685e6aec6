"""A real single-node Slurm cluster for the test session.

    from slurm_cluster import slurm_cluster  # noqa: F401  (a session fixture)

    def test_x(slurm_cluster):
        slurm_cluster.run("sbatch", "--wrap", "true")

As root, writes a slurm.conf for this host into a temporary folder, starts
slurmctld and slurmd in the background with that config (SLURM_CONF, so
nothing under /etc is touched), waits until the node is idle, and stops both at
the end of the session. The test process exports SLURM_CONF, so sbatch, squeue
and scontrol, and the jobs they start, all talk to this cluster. Skips only
when not root or the Slurm programs are missing (`scripts/bootstrap.sh --test`
installs them).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

DAEMONS = ("slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")


def missing_reason() -> str | None:
    if os.geteuid() != 0:
        return "a test Slurm cluster needs root (slurmd runs jobs as their users)"
    missing = [p for p in (*DAEMONS, *CLIENTS) if shutil.which(p) is None]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing): run scripts/bootstrap.sh --test"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 1024


def write_config(folder: Path, host: str) -> Path:
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text(f"""\
ClusterName=omnibatch-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/filetxt
JobCompLoc={folder}/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MailProg=/bin/true
DependencyParameters=kill_invalid_depend
ReturnToService=2
KillWait=20
MinJobAge=600
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} RealMemory={int(available_mib() * 0.9)} \
State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


@dataclass
class SlurmCluster:
    folder: Path
    conf: Path
    host: str
    procs: list[subprocess.Popen]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(list(args), capture_output=True, text=True, env=self.env, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr}{done.stdout}")
        return done

    def logs(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.folder / name
            if path.exists():
                parts.append(f"--- {name} (tail)\n" + "\n".join(path.read_text().splitlines()[-30:]))
        return "\n".join(parts)

    def queued(self, job: str) -> list[str]:
        """`<id> <state>` of each task of `job` still known to squeue."""
        done = self.run("squeue", "-h", "-j", job, "-o", "%i %T", check=False)
        return [line for line in done.stdout.splitlines() if line.strip()]

    def wait_gone(self, job: str, timeout: float = 600) -> None:
        """Wait until no task of `job` is pending, running or completing."""
        deadline = time.monotonic() + timeout
        while self.queued(job):
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job} still queued after {timeout} s: {self.queued(job)}\n"
                                   f"{self.logs()}")
            time.sleep(1)

    def state(self, job: str) -> str:
        done = self.run("scontrol", "show", "job", job, check=False)
        for token in done.stdout.split():
            if token.startswith("JobState="):
                return token.split("=", 1)[1]
        return "UNKNOWN"

    def stop(self) -> None:
        if all(p.poll() is None for p in self.procs):  # end the jobs first: slurmstepd outlives slurmd
            jobs = self.run("squeue", "-h", "-o", "%A", check=False).stdout.split()
            if jobs:
                self.run("scancel", *sorted(set(jobs)), check=False)
                deadline = time.monotonic() + 40
                while self.run("squeue", "-h", check=False).stdout.strip() and time.monotonic() < deadline:
                    time.sleep(0.5)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_cluster(folder: Path, timeout: float = 60) -> SlurmCluster:
    host = socket.gethostname().split(".")[0]
    conf = write_config(folder, host)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    procs: list[subprocess.Popen] = []
    cluster = SlurmCluster(folder, conf, host, procs)
    for cmd in (["slurmctld", "-D", "-i"], ["slurmd", "-D", "-N", host]):
        out = open(folder / f"{cmd[0]}.stdout", "wb")
        procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True))
        out.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            cluster.stop()
            raise RuntimeError(f"a Slurm daemon exited at start\n{cluster.logs()}")
        done = cluster.run("sinfo", "-h", "-N", "-o", "%T", check=False)
        if done.returncode == 0 and done.stdout.strip() == "idle":
            return cluster
        time.sleep(0.3)
    cluster.stop()
    raise RuntimeError(f"the Slurm node did not become idle in {timeout} s\n{cluster.logs()}")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
