#!/usr/bin/env python3
"""A cluster of hosts simulated on this machine: Linux namespaces, Open MPI over TCP, SLURM.

Each host ``n1``, ``n2``, ... is a process holding its own network, host-name (UTS) and
mount namespace: its own host name, its own address ``10.77.0.N`` on a bridge (held by a
further *switch* namespace, so nothing is added to this machine's own network), its own
empty ``/tmp`` (node-local, as on a cluster's compute node), and the rest of the file system
shared, as a cluster's parallel file system is. Folders below ``/tmp`` that the hosts must
see (the cluster's folder, a checkout or virtual environment there) are given as *shared*.
Open MPI reaches the other hosts through a launch agent (``plm_rsh_agent``) that enters
their namespaces as ``ssh`` would log in; SLURM runs one ``slurmctld`` on ``n1`` and one
``slurmd`` per host. Needs root, ``unshare``/``nsenter`` (util-linux) and ``ip`` (iproute2).

Usage (as root)::

    scripts/cluster.py up FOLDER [--hosts 2] [--slurm] [--share PATH ...]
    scripts/cluster.py run FOLDER HOST CMD ...      # CMD on HOST, in this folder
    scripts/cluster.py mpirun FOLDER [--per-host 2] CMD ...   # mpirun from n1 over every host
    scripts/cluster.py down FOLDER                  # stop everything on the hosts

The cluster's state (the host processes, the agent, slurm.conf, daemon logs) lives in
FOLDER; ``down`` kills every process in the hosts' namespaces, which removes them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "Cluster",
    "install_slurm",
    "slurm_missing",
    "start_munge",
    "stop",
    "unavailable",
    "write_slurm_conf",
]

SUBNET = "10.77.0"
STATE = "cluster.json"
SLURM_PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
SLURM_CONF = """ClusterName=h5par
SlurmctldHost={controller}
{ports}SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job waits cred_expire + 1 s before it may start again (default 120 s).
AuthInfo=cred_expire=10
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool-%n
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd-%n.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=300
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
{nodes}
PartitionName=debug Nodes={names} Default=YES MaxTime=INFINITE State=UP
"""

#: A host: its host name, then its folders below /tmp bound back over its private /tmp.
_HOST = """set -e
hostname "$1"; shift
stage=$1; shift
i=0
for path in "$@"; do mkdir -p "$stage/$i"; mount --bind "$path" "$stage/$i"; i=$((i+1)); done
mount -t tmpfs -o mode=1777 tmpfs /tmp
i=0
for path in "$@"; do mkdir -p "$path"; mount --move "$stage/$i" "$path"; i=$((i+1)); done
ip link set lo up
echo "ready $$"
exec sleep infinity
"""

#: Open MPI's launch agent (``plm_rsh_agent``): ``agent HOST COMMAND...`` as ``ssh`` does it.
_AGENT = """#!/bin/sh
# Open MPI's launch agent for the cluster in {folder}: runs a command on one of its hosts.
host=$1; shift
case $host in
{cases}
  *) echo "cluster agent: unknown host '$host' (valid: {names})" >&2; exit 255 ;;
esac
# As ssh does, the command gets a login's environment and home folder, not the caller's:
# mpirun's -x passes on what the ranks need, and they change to mpirun's folder by name.
exec nsenter --target "$pid" --net --uts --mount -- \\
  env -i PATH="$PATH" HOME="$HOME" LANG=C.UTF-8 /bin/sh -c "cd; $*"
"""


def run(cmd: Sequence[str], timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` and capture its output (never raises on a non-zero status)."""
    return subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def unavailable() -> str | None:
    """Why hosts cannot be simulated here (one line), or None when they can."""
    if os.geteuid() != 0:
        return "simulated hosts need root (Linux namespaces)"
    tools = ("unshare", "nsenter", "setsid", "ip", "mpirun")
    missing = [p for p in tools if shutil.which(p) is None]
    if missing:
        return f"simulated hosts need {', '.join(missing)} (util-linux, iproute2, Open MPI)"
    tried = run(["unshare", "--net", "--uts", "--mount", "true"], timeout=20)
    if tried.returncode != 0:
        return f"this machine refuses namespaces: {tried.stderr.strip()[:200]}"
    return None


def _inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def _processes_in(namespace: int) -> list[int]:
    """Every process whose network namespace is ``namespace`` (an inode)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _inode(int(entry)) == namespace:
            found.append(int(entry))
    return found


def _signal(pid: int, number: int) -> None:
    """Send signal ``number`` to ``pid`` unless it has ended."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, number)


def _kill_all(namespace: int | None, keep: int | None = None, timeout: float = 10) -> None:
    """SIGKILL every process in network namespace ``namespace`` but ``keep``; wait for it."""
    if namespace is None:
        return
    deadline = time.monotonic() + timeout
    while True:
        victims = [p for p in _processes_in(namespace) if p != keep]
        if not victims or time.monotonic() > deadline:
            return
        for pid in victims:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.05)


class Cluster:
    """Hosts ``n1``..``nN`` made by :meth:`up` in ``folder`` (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder).resolve()
        state = json.loads((self.folder / STATE).read_text())
        self.pids: dict[str, int] = state["hosts"]
        self.switch: int = state["switch"]
        self.nets: dict[str, int] = state["nets"]
        self.switch_net: int | None = state.get("switch_net")
        self._munged: subprocess.Popen[bytes] | None = None

    # -- making and removing the hosts --------------------------------------------------

    @classmethod
    def up(cls, folder: Path, hosts: int = 2, shared: Sequence[Path] = ()) -> Cluster:
        """Make ``hosts`` hosts; ``folder`` and ``shared`` are seen by all of them."""
        folder = Path(folder).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        if (folder / STATE).is_file():
            Cluster(folder).down()
        names = [f"n{i + 1}" for i in range(hosts)]
        resolved = {Path(p).resolve() for p in (folder, *shared)}
        missing = [str(p) for p in resolved if not p.is_dir()]
        if missing:
            raise RuntimeError(f"shared folders missing: {', '.join(missing)}")
        below_tmp = sorted(str(p) for p in resolved if p.is_relative_to("/tmp"))
        switch = _keeper(["unshare", "--net", "sh", "-c", 'echo "ready $$"; exec sleep infinity'])
        pids: dict[str, int] = {}
        nets: dict[str, int | None] = {}
        state = {"hosts": pids, "switch": switch, "nets": nets, "switch_net": _inode(switch)}
        try:
            _in(switch, "ip", "link", "add", "br0", "type", "bridge")
            _in(switch, "ip", "link", "set", "br0", "up")
            with tempfile.TemporaryDirectory(prefix="h5par-cluster-", dir="/run") as stage:
                for i, name in enumerate(names, 1):
                    pids[name] = _host(name, stage, below_tmp)
                    nets[name] = _inode(pids[name])
                    _wire(switch, pids[name], i)
        finally:
            (folder / STATE).write_text(json.dumps(state, indent=1))
            if len(nets) < len(names) or None in nets.values():
                Cluster(folder).down()  # the hosts made so far
        cluster = cls(folder)
        cluster._write_agent()
        return cluster

    def down(self) -> None:
        """Kill every process on every host (daemons, ranks) and the hosts themselves."""
        self.stop_slurm()
        # By namespace, never by a recorded pid alone: after a reboot it may be another's.
        nets = [*(self.nets.get(name) for name in self.pids), self.switch_net]
        for net in nets:
            _kill_all(net)
        deadline = time.monotonic() + 10
        while any(net is not None and _processes_in(net) for net in nets):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        (self.folder / STATE).unlink(missing_ok=True)

    def kill_host(self, name: str) -> None:
        """SIGKILL every process running on host ``name`` (it stays up, as after a reboot)."""
        _kill_all(self.nets[name], keep=self.pids[name])

    # -- running things on the hosts ----------------------------------------------------

    @property
    def names(self) -> list[str]:
        """The host names, ``n1`` first."""
        return list(self.pids)

    @property
    def agent(self) -> Path:
        """Open MPI's launch agent for these hosts."""
        return self.folder / "agent"

    def address(self, name: str) -> str:
        """Host ``name``'s address."""
        return f"{SUBNET}.{self.names.index(name) + 1}"

    def command(self, host: str, argv: Sequence[str], cwd: Path | None = None) -> list[str]:
        """``argv`` run on ``host`` (in ``cwd``, default this process's folder)."""
        wd = str(Path(cwd or Path.cwd()).resolve())  # as the host sees it: entered by name
        enter = ["nsenter", "--target", str(self.pids[host]), "--net", "--uts", "--mount", "--"]
        return [*enter, "sh", "-c", 'cd "$0" && exec "$@"', wd, *argv]

    def mpirun(self, ranks: dict[str, int]) -> list[str]:
        """``mpirun`` with ``ranks[host]`` ranks on each host (run it on one of them)."""
        hosts = ",".join(f"{name}:{n}" for name, n in ranks.items())
        return ["mpirun", "--mca", "plm_rsh_agent", str(self.agent), "--host", hosts]

    def _write_agent(self) -> None:
        cases = "\n".join(f"  {name}) pid={pid} ;;" for name, pid in self.pids.items())
        text = _AGENT.format(folder=self.folder, cases=cases, names=" ".join(self.names))
        self.agent.write_text(text)
        self.agent.chmod(0o755)

    # -- SLURM ----------------------------------------------------------------------------

    @property
    def slurm_conf(self) -> Path:
        """The cluster's slurm.conf (client commands need ``SLURM_CONF`` set to it)."""
        return self.folder / "slurm" / "slurm.conf"

    def start_slurm(self, timeout: float = 90) -> None:
        """Start munged (unless one answers), slurmctld on n1 and slurmd on every host."""
        install_slurm()
        self._munged = start_munge()  # stopped by down(), if this process is the one
        addresses = {name: self.address(name) for name in self.names}
        write_slurm_conf(self.slurm_conf, addresses)
        env = dict(os.environ, SLURM_CONF=str(self.slurm_conf))
        daemons: list[tuple[str, str, list[str]]] = [("n1", "slurmctld", [])] + [
            (n, "slurmd", ["-N", n]) for n in self.names
        ]
        for host, daemon, args in daemons:
            program = shutil.which(daemon) or f"/usr/sbin/{daemon}"
            with (self.slurm_conf.parent / f"{daemon}-{host}.stderr").open("w") as err:
                argv = self.command(host, [program, "-D", "-f", str(self.slurm_conf), *args])
                subprocess.run(["setsid", "-f", *argv], env=env, stdout=err, stderr=err, check=True)
        self._wait_idle(env, timeout)

    def _wait_idle(self, env: dict[str, str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            shown = run(self.command("n1", ["sinfo", "-h", "-N", "-o", "%N %T"]), env=env)
            states = dict(line.split() for line in shown.stdout.splitlines() if " " in line)
            if all(states.get(name) == "idle" for name in self.names):
                return
            if time.monotonic() > deadline:
                logs = {p.name: p.read_text()[-1500:] for p in self.slurm_conf.parent.glob("*.log")}
                raise RuntimeError(f"SLURM did not come up (nodes {states}): {logs}")
            time.sleep(0.5)

    def stop_slurm(self) -> None:
        """Stop the munged this process started (the SLURM daemons die with the hosts).

        One started by ``scripts/cluster.py up --slurm`` stays, as the service would: other
        clusters may use it.
        """
        stop(self._munged)
        self._munged = None


def _in(pid: int, *argv: str) -> None:
    """Run ``argv`` in the network namespace of process ``pid``; raise if it fails."""
    done = run(["nsenter", "--target", str(pid), "--net", "--", *argv])
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


def _keeper(argv: list[str]) -> int:
    """Start a process that holds namespaces (not our child: ``setsid -f``); its pid.

    ``argv`` prints ``ready PID`` once set up, then sleeps until killed.
    """
    proc = subprocess.Popen(
        ["setsid", "-f", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with proc:
        assert proc.stdout is not None and proc.stderr is not None
        word, _, pid = proc.stdout.readline().partition(" ")
        if word != "ready":
            raise RuntimeError(f"{' '.join(argv[:5])}: {proc.stderr.read().strip()}")
    return int(pid)


def _host(name: str, stage: str, shared: list[str]) -> int:
    """A host's process: its own network, host name, mount namespace and /tmp."""
    argv = ["unshare", "--net", "--uts", "--mount", "--propagation", "private"]
    return _keeper([*argv, "sh", "-c", _HOST, "host", name, stage, *shared])


def _wire(switch: int, pid: int, index: int) -> None:
    """Connect host ``pid`` to the bridge with address ``SUBNET.index``."""
    port = f"h{index}"
    _in(
        switch, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", str(pid)
    )
    _in(switch, "ip", "link", "set", port, "master", "br0")
    _in(switch, "ip", "link", "set", port, "up")
    _in(pid, "ip", "addr", "add", f"{SUBNET}.{index}/24", "dev", "eth0")
    _in(pid, "ip", "link", "set", "eth0", "up")


# -- SLURM's configuration, packages and munge (also used by tests/cli/test_slurm.py) ------


def write_slurm_conf(
    conf: Path, nodes: dict[str, str], ports: tuple[int, int] | None = None
) -> None:
    """Write a fresh ``conf`` for ``nodes`` (``{name: address}``, slurmctld on the first).

    Its folder is emptied and holds SLURM's state, spool folders and logs; ``ports`` are
    slurmctld's and slurmd's (default SLURM's own, 6817 and 6818).
    """
    folder = conf.parent
    shutil.rmtree(folder, ignore_errors=True)  # a fresh SLURM: no jobs of an earlier one
    for sub in ("state", *(f"spool-{name}" for name in nodes)):
        (folder / sub).mkdir(parents=True)
    first = next(iter(nodes))
    text = SLURM_CONF.format(
        controller=f"{first}({nodes[first]})",
        ports="" if ports is None else f"SlurmctldPort={ports[0]}\nSlurmdPort={ports[1]}\n",
        folder=folder,
        nodes="\n".join(
            f"NodeName={n} NodeAddr={a} CPUs=2 State=UNKNOWN" for n, a in nodes.items()
        ),
        names=",".join(nodes),
    )
    conf.write_text(text)


def slurm_missing() -> list[str]:
    """The Debian packages of SLURM and munge that are not installed."""
    programs = {"slurmctld": "slurmctld", "slurmd": "slurmd", "sbatch": "slurm-client"}
    programs["munged"] = "munge"
    return [
        package
        for name, package in programs.items()
        if not (shutil.which(name) or Path(f"/usr/sbin/{name}").is_file())
    ]


def install_slurm() -> None:
    """apt-get SLURM's packages when missing; RuntimeError (one line) when that fails."""
    if not slurm_missing():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            f"SLURM is not installed and cannot be: needs root and apt-get ({slurm_missing()})"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", *SLURM_PACKAGES]
    done = run(install, timeout=600, env=env)
    if done.returncode != 0:  # a fresh machine may need the package lists first
        run(["apt-get", "update"], timeout=600, env=env)
        done = run(install, timeout=600, env=env)
    if done.returncode != 0 or slurm_missing():
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"cannot install SLURM ({' '.join(install)}): {lines[-1:]}")


def _munge_answers() -> bool:
    try:
        encoded = run(["munge", "-n"], timeout=10)
        return (
            encoded.returncode == 0
            and run(["unmunge"], timeout=10, input=encoded.stdout).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_munge() -> subprocess.Popen[bytes] | None:
    """Start munged as user munge unless one answers; returns the process started."""
    if _munge_answers():
        return None
    key = Path("/etc/munge/munge.key")
    if not key.is_file():  # the Debian package creates one; make it if it is gone
        created = run(["mungekey", "--create", "--keyfile", str(key)], timeout=30)
        if created.returncode != 0:
            raise RuntimeError(f"mungekey: {created.stderr.strip()}")
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    socket_dir = Path("/run/munge")
    socket_dir.mkdir(mode=0o755, exist_ok=True)
    shutil.chown(socket_dir, "munge", "munge")
    munged = shutil.which("munged") or "/usr/sbin/munged"
    proc = subprocess.Popen(
        [munged, "--foreground"],
        user="munge",
        group="munge",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while not _munge_answers():
        if time.monotonic() > deadline or proc.poll() is not None:
            stop(proc)
            raise RuntimeError("munged did not start (see /var/log/munge/munged.log)")
        time.sleep(0.2)
    return proc


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """Terminate ``proc`` (kill it after 20 s); nothing when it is None or has ended."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


# -- command line ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/cluster.py up|run|mpirun|down`` (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    up = verbs.add_parser("up", help="make the hosts (and start SLURM)")
    up.add_argument("folder", type=Path)
    up.add_argument("--hosts", type=int, default=2)
    up.add_argument("--slurm", action="store_true", help="start slurmctld and one slurmd per host")
    up.add_argument(
        "--share", type=Path, action="append", default=[], help="a folder below /tmp the hosts see"
    )
    on = verbs.add_parser("run", help="run a command on a host")
    on.add_argument("folder", type=Path)
    on.add_argument("host")
    on.add_argument("command", nargs=argparse.REMAINDER)
    mpi = verbs.add_parser("mpirun", help="mpirun from n1 over every host")
    mpi.add_argument("folder", type=Path)
    mpi.add_argument("--per-host", type=int, default=2)
    mpi.add_argument("command", nargs=argparse.REMAINDER)
    down = verbs.add_parser("down", help="stop everything on the hosts")
    down.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.verb == "up":
        reason = unavailable()
        if reason:
            parser.exit(2, f"cluster: {reason}\n")
        try:
            cluster = Cluster.up(args.folder, args.hosts, args.share)
        except RuntimeError as exc:
            parser.exit(1, f"cluster: {exc}\n")
        if args.slurm:
            try:
                cluster.start_slurm()
            except RuntimeError as exc:
                cluster.down()
                parser.exit(1, f"cluster: {exc}\n")
            print(f"export SLURM_CONF={shlex.quote(str(cluster.slurm_conf))}")
        print(f"hosts {' '.join(cluster.names)} up; agent {cluster.agent}")
        return 0
    cluster = Cluster(args.folder)
    if args.verb == "down":
        cluster.down()
        return 0
    if args.verb == "run":
        return subprocess.call(cluster.command(args.host, args.command))
    command, per_host = list(args.command), args.per_host
    if command[:1] == ["--per-host"] and len(command) > 1:  # given after FOLDER
        per_host, command = int(command[1]), command[2:]
    ranks = {name: per_host for name in cluster.names}
    return subprocess.call(cluster.command("n1", [*cluster.mpirun(ranks), *command]))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
