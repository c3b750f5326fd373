"""The one thin wrapper over mpi4py: resolving communicators and small collectives.

MPI is initialised only when more than one process takes part. A process that is the whole
job (no launcher, or a launcher that started one rank) and has not initialised MPI itself
works with :data:`ONE_PROCESS`, a communicator of this process alone that needs no MPI:
``h5par run`` on one rank then starts like a plain h5py script, and ``import h5par`` never
has MPI side effects.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import numpy as np

if TYPE_CHECKING:
    from types import ModuleType
    from typing import TypeAlias

    from mpi4py import MPI

__all__ = [
    "ONE_PROCESS",
    "Comm",
    "OneProcess",
    "abort",
    "allgather",
    "allgather_within",
    "answer_pings",
    "ask_alive",
    "bcast",
    "bcast_array",
    "hosts",
    "key",
    "messaging",
    "mpi_comm",
    "mpi_versions",
    "notices_possible",
    "post_notice",
    "post_progress",
    "private",
    "rank",
    "read_notices",
    "release",
    "release_noticed",
    "released",
    "resolve_comm",
    "self_comm",
    "settle_notices",
    "settle_progress",
    "size",
    "take_progress",
    "world",
]

#: Bytes per broadcast message (MPI counts are C ints; stay far below 2 GiB).
_BCAST_PIECE = 1 << 30

T = TypeVar("T")

#: Where launchers (mpirun, mpiexec, srun) put the rank and the number of ranks.
_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID")
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS")
_PML = "OMPI_MCA_pml"  # Open MPI's messaging layer (its variables are lower case)
#: The Open MPI settings h5par made itself before MPI started (see :func:`messaging`).
_SET_BY_H5PAR: dict[str, str] = {}


class _Done:
    """A request that has already completed (what a one-process barrier returns)."""

    def Test(self) -> bool:  # noqa: N802  (mpi4py's names)
        """True: done."""
        return True


class OneProcess:
    """A communicator of this process alone, without MPI: the job when it is one process.

    It has the few ``mpi4py.MPI.Comm`` operations h5par uses, with their one-rank meaning:
    collectives return this process's own values. Files opened on it use a serial driver;
    :func:`mpi_comm` gives ``MPI.COMM_SELF`` where MPI is needed after all (the mpio driver).
    """

    def Get_rank(self) -> int:  # noqa: N802
        """0."""
        return 0

    def Get_size(self) -> int:  # noqa: N802
        """1."""
        return 1

    def py2f(self) -> int:
        """-1, a handle no MPI communicator has."""
        return -1

    def Dup(self) -> OneProcess:  # noqa: N802
        """Itself (nothing can be mixed up with one process)."""
        return self

    def bcast(self, obj: T, root: int = 0) -> T:
        """``obj``."""
        return obj

    def allgather(self, sendobj: T) -> list[T]:
        """``[sendobj]``."""
        return [sendobj]

    def Bcast(self, buf: Any, root: int = 0) -> None:  # noqa: N802
        """Nothing to send: ``buf`` is already everywhere."""

    def Ibarrier(self) -> _Done:  # noqa: N802
        """A barrier of one, complete at once."""
        return _Done()

    def Abort(self, errorcode: int = 0) -> NoReturn:  # noqa: N802
        """End this process with ``errorcode``."""
        os._exit(errorcode)


#: The communicator of a one-process job (see :func:`resolve_comm`).
ONE_PROCESS = OneProcess()

if TYPE_CHECKING:
    #: What h5par's functions take as ``comm``: an mpi4py communicator or ONE_PROCESS.
    Comm: TypeAlias = "MPI.Comm | OneProcess"


def _launched(names: tuple[str, ...], default: int) -> int:
    """A rank or size as the launcher's environment gives it (``default`` without one)."""
    return next((int(os.environ[n]) for n in names if os.environ.get(n, "").isdigit()), default)


def _initialised() -> ModuleType | None:
    """mpi4py.MPI when this process has initialised MPI (and not finalised it), else None."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not mpi.Is_initialized() or mpi.Is_finalized():
        return None
    return mpi


def _single_node_defaults() -> None:
    """Open MPI settings for a job whose ranks all run on one node, before MPI starts.

    On one node, Open MPI's ob1 messaging layer over shared memory is what runs anyway,
    but selecting it takes a probe of every network layer first: UCX's probe alone costs
    0.2 s per start here. A user's own ``OMPI_MCA_pml`` always wins.
    """
    total = os.environ.get("OMPI_COMM_WORLD_SIZE")
    singleton = not any(os.environ.get(name) for name in _SIZE_VARS)  # started without a launcher
    if total is not None:  # mpirun
        one_node = total == os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE")
    else:  # srun gives the nodes of its step
        one_node = os.environ.get("SLURM_STEP_NUM_NODES") == "1"
    if (singleton or one_node) and _PML not in os.environ:
        os.environ[_PML] = _SET_BY_H5PAR[_PML] = "ob1"


def messaging() -> str:
    """How Open MPI's messaging layer (``pml``) is chosen for this job (``h5par info``).

    Ranks on several hosts leave it to Open MPI (TCP or the network's own layer between
    hosts, shared memory within one).
    """
    pml = os.environ.get(_PML)
    if pml is None:
        return "Open MPI's choice"
    if _SET_BY_H5PAR.get(_PML) == pml:
        return f"{pml} (set by h5par: every rank on one node)"
    return f"{pml} (OMPI_MCA_pml)"


def hosts(comm: Comm) -> list[str]:
    """The host name of every rank of ``comm``, by rank (collective)."""
    return allgather(comm, socket.gethostname())


def _mpi() -> ModuleType:
    """mpi4py.MPI, initialising MPI on first use."""
    if "mpi4py.MPI" not in sys.modules:
        _single_node_defaults()
    from mpi4py import MPI

    return MPI


def resolve_comm(comm: Comm | None = None) -> Comm:
    """Return ``comm``; when it is None, the job's communicator.

    That is ``MPI.COMM_WORLD`` (initialising MPI) when MPI is initialised already or the
    launcher started several ranks, and :data:`ONE_PROCESS` when this process is the whole job.
    """
    if comm is not None:
        return comm
    if _initialised() is None and _launched(_SIZE_VARS, 1) == 1:
        return ONE_PROCESS
    return _mpi().COMM_WORLD


def self_comm() -> Comm:
    """A communicator of this rank alone (for work one rank does by itself)."""
    mpi = _initialised()
    return ONE_PROCESS if mpi is None else mpi.COMM_SELF


def mpi_comm(comm: Comm) -> MPI.Comm:
    """``comm`` as an mpi4py communicator: ``MPI.COMM_SELF`` for :data:`ONE_PROCESS`."""
    if isinstance(comm, OneProcess):
        return _mpi().COMM_SELF
    return comm


def world() -> tuple[int, int]:
    """This process's rank in the job and the job's number of ranks (never starts MPI)."""
    mpi = _initialised()
    if mpi is None:
        return _launched(_RANK_VARS, 0), _launched(_SIZE_VARS, 1)
    return int(mpi.COMM_WORLD.Get_rank()), int(mpi.COMM_WORLD.Get_size())


def mpi_versions() -> tuple[str, str]:
    """mpi4py's version and the MPI library's (one line, without its package details)."""
    import mpi4py

    library = " ".join(_mpi().Get_library_version().split()).split(", package:")[0]
    return mpi4py.__version__, library


def rank(comm: Comm) -> int:
    """This process's rank in ``comm``."""
    return int(comm.Get_rank())


def size(comm: Comm) -> int:
    """Number of ranks in ``comm``."""
    return int(comm.Get_size())


def bcast(comm: Comm, value: T, root: int = 0) -> T:
    """Broadcast a picklable value from ``root``. Collective over comm."""
    result: T = comm.bcast(value, root=root)
    return result


def bcast_array(comm: Comm, array: np.ndarray, root: int = 0) -> None:
    """Broadcast a C-contiguous array in place from ``root`` (any dtype). Collective over comm.

    Sent as raw bytes in pieces of at most 1 GiB, so neither the dtype nor the size matters.
    """
    raw = array.reshape(-1).view(np.uint8)
    for start in range(0, raw.size, _BCAST_PIECE):
        comm.Bcast(raw[start : start + _BCAST_PIECE], root=root)


def allgather(comm: Comm, value: T) -> list[T]:
    """Gather one picklable value from every rank, on every rank. Collective over comm."""
    result: list[T] = comm.allgather(value)
    return result


#: Seconds between polls of a pending agreement (short: steps end in one).
_POLL = 0.0005


_PRIVATE: dict[int, Comm] = {}


def key(comm: Comm) -> int:
    """A number naming ``comm`` (and its private duplicate) in this process."""
    return int(comm.py2f())


def private(comm: Comm) -> Comm:
    """A duplicate of ``comm`` kept for h5par's agreements. Collective the first time.

    HDF5 runs its own collective calls on (a duplicate of) the file's communicator. When a
    rank fails and goes to agree while the others are still inside such a call, the two
    must not be able to match each other: agreements use this separate communicator.
    Entry points create it before any file is opened.
    """
    number = key(comm)
    if number not in _PRIVATE:
        _PRIVATE[number] = comm.Dup()
    return _PRIVATE[number]


def allgather_within(
    comm: Comm,
    value: T,
    patience: float | None,
    until: Callable[[], bool] | None = None,
    alive: Callable[[], bool] | None = None,
    poll: Callable[[], None] | None = None,
) -> list[T] | None:
    """:func:`allgather`, or None when some rank has not arrived after ``patience`` seconds.

    Collective over comm. The ranks first meet in a non-blocking barrier polled until the
    deadline, so a rank that never comes (blocked, dead, stuck in another collective call)
    cannot keep this one waiting forever. ``patience=None`` waits as long as it takes;
    ``until`` (polled with the barrier) ends the wait early when it returns True; ``alive``,
    asked at each deadline, grants another ``patience`` seconds when it returns True (the
    ranks not here yet are still making progress); ``poll`` is called while waiting (it
    must not communicate collectively: rank 0 reads the others' progress messages).
    """
    if patience is not None or poll is not None:
        request = comm.Ibarrier()
        wait = math.inf if patience is None else patience
        deadline = time.monotonic() + wait
        while not request.Test():
            if poll is not None:
                poll()
            if until is not None and until():
                return None  # the caller aborts the job: the request dies with it
            if time.monotonic() > deadline:
                if (alive is None or not alive()) and not _settles(request, _SETTLE):
                    return None
                deadline = time.monotonic() + wait
            time.sleep(_POLL)
    return allgather(comm, value)


#: Seconds a barrier may take to complete once every rank has arrived (the last just now).
_SETTLE = 2.0


def _settles(request: Any, seconds: float) -> bool:
    """True when ``request`` completes within ``seconds`` (polled)."""
    deadline = time.monotonic() + seconds
    while not request.Test():
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL)
    return True


# Failure notices. A rank that failed tells every other rank so before it waits in an
# agreement, and a rank stuck inside a collective call the failed rank left tells it back
# (a release). Both are point-to-point messages on the private communicators, where
# nothing else is point-to-point (agreements are collective operations, which never match
# point-to-point messages): nothing but these functions can receive them. Notices are read
# by the watchdog thread as well as the main thread, hence MPI_THREAD_MULTIPLE and a lock.

_NOTICE = 1  # tag of a notice: any picklable value from the failed rank
_RELEASE = 2  # tag of a release: why, as a string, to the failed rank
_PING = 3  # tag of a question from a rank tired of waiting: are you still working?
_PONG = 4  # tag of the answer, sent by the asked rank's watchdog thread
_LOCK = threading.Lock()
_RECEIVED: dict[tuple[int, int], Any] = {}  # (communicator key, source) -> notice
_RELEASES: list[MPI.Request] = []  # never completed: the job is aborted right after


def notices_possible() -> bool:
    """True when MPI runs and lets threads other than the main one call it (THREAD_MULTIPLE)."""
    mpi = _initialised()  # never initialise MPI here: the watchdog thread asks too
    return mpi is not None and bool(mpi.Query_thread() == mpi.THREAD_MULTIPLE)


def post_notice(channel: Comm, notice: Any) -> list[MPI.Request]:
    """Send ``notice`` to every other rank of ``channel`` (a :func:`private` communicator).

    Non-blocking: complete the requests with :func:`settle_notices` once the ranks agreed.
    """
    if isinstance(channel, OneProcess):
        return []  # nobody else to tell
    me = channel.Get_rank()
    others = (r for r in range(channel.Get_size()) if r != me)
    return [channel.isend(notice, dest=r, tag=_NOTICE) for r in others]


def settle_notices(channel: Comm, sent: list[MPI.Request], sources: list[int]) -> None:
    """After an agreement: take the notices ``sources`` sent, and complete the ones sent.

    Every rank that posted a notice to the others takes part in the agreement, so the
    messages are on their way: nothing stays pending (MPI_Finalize would wait for it).
    """
    if isinstance(channel, OneProcess):
        return
    from mpi4py import MPI

    number = key(channel)
    with _LOCK:
        for source in sources:
            if _RECEIVED.pop((number, source), None) is None:
                channel.recv(source=source, tag=_NOTICE)
    MPI.Request.waitall(sent)


def read_notices(comm: Comm | None = None) -> list[tuple[int, Any]]:
    """The notices received on ``comm``'s private communicator (None: on all of them).

    Pairs (source rank, notice) sorted by rank. Safe from the watchdog thread (never creates
    a communicator); the notices stay readable until :func:`settle_notices` takes them.
    """
    from mpi4py import MPI

    found_channels = _PRIVATE.values() if comm is None else [_PRIVATE.get(key(comm))]
    channels = [c for c in found_channels if c is not None and not isinstance(c, OneProcess)]
    numbers = {key(c) for c in channels}
    status = MPI.Status()
    with _LOCK:
        for channel in channels:
            while (message := channel.improbe(tag=_NOTICE, status=status)) is not None:
                _RECEIVED[key(channel), status.Get_source()] = message.recv()
        found = [(s, notice) for (n, s), notice in _RECEIVED.items() if n in numbers]
    return sorted(found, key=lambda pair: pair[0])


_RELEASED: dict[int, tuple[int, str]] = {}  # channel key -> (source, reason) of a release


def release(comm: Comm, dest: int, reason: str) -> None:
    """Tell rank ``dest``, which failed, to end the job now: ``reason`` says why.

    Sent by a rank that will not come to the agreement the failed rank waits in: it is
    inside a collective call the failed rank left, or its watchdog found it stuck.
    """
    channel = _PRIVATE.get(key(comm))
    if channel is not None and not isinstance(channel, OneProcess):
        _RELEASES.append(channel.isend(reason, dest=dest, tag=_RELEASE))


def release_noticed(reason: str) -> None:
    """:func:`release` every rank whose failure notice this rank has received."""
    channels = {key(c): c for c in _PRIVATE.values() if not isinstance(c, OneProcess)}
    with _LOCK:
        sources = list(_RECEIVED)
    for number, source in sources:
        if number in channels:
            _RELEASES.append(channels[number].isend(reason, dest=source, tag=_RELEASE))


def released(channel: Comm) -> tuple[int, str] | None:
    """(rank, reason) of a release sent to this rank on ``channel``, if any (:func:`release`)."""
    if isinstance(channel, OneProcess):
        return None
    number = key(channel)
    if number not in _RELEASED:
        from mpi4py import MPI

        status = MPI.Status()
        message = channel.improbe(tag=_RELEASE, status=status)
        if message is None:
            return None
        _RELEASED[number] = (int(status.Get_source()), str(message.recv()))
    return _RELEASED[number]


def ask_alive(channel: Comm, timeout: float) -> list[Any] | None:
    """Ask every other rank of ``channel`` how it is doing; None when one does not answer.

    The answers come from the other ranks' watchdog threads (:func:`answer_pings`), in rank
    order. A rank that does not answer within ``timeout`` seconds cannot run its watchdog
    either (dead, or blocked in a call that never lets go); the caller aborts the job.
    """
    if isinstance(channel, OneProcess):
        return []
    from mpi4py import MPI

    me = channel.Get_rank()
    others = [r for r in range(channel.Get_size()) if r != me]
    pings = [channel.isend(None, dest=r, tag=_PING) for r in others]
    answers: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    while len(answers) < len(others):
        for r in others:
            message = None if r in answers else channel.improbe(source=r, tag=_PONG)
            if message is not None:
                answers[r] = message.recv()
        if len(answers) < len(others) and time.monotonic() > deadline:
            return None  # the caller aborts the job: the requests die with it
        time.sleep(_POLL)
    MPI.Request.waitall(pings)
    return [answers[r] for r in others]


def answer_pings(answer: Any) -> None:
    """Answer every question :func:`ask_alive` sent this rank with ``answer`` (watchdog thread)."""
    from mpi4py import MPI

    status = MPI.Status()
    for channel in list(_PRIVATE.values()):
        if isinstance(channel, OneProcess):
            continue
        while (message := channel.improbe(tag=_PING, status=status)) is not None:
            message.recv()
            channel.send(answer, dest=status.Get_source(), tag=_PONG)  # small: never blocks


# Progress messages. Ranks that process files alone tell rank 0 how many bytes they have
# read, so that its progress bar counts every rank's files: point-to-point messages on the
# private communicator (their own tag), sent without waiting and read by rank 0 when it
# looks (matched probes), never a collective call. After the ranks agreed, rank 0 takes
# what is still on its way, knowing from the others how many they sent.

_PROGRESS = 5  # tag of a progress message: bytes read since the previous one


def post_progress(channel: Comm, nbytes: int) -> MPI.Request | None:
    """Send ``nbytes`` of progress to rank 0 of ``channel`` (non-blocking; None on rank 0).

    Complete the request with :func:`settle_progress`.
    """
    if isinstance(channel, OneProcess) or channel.Get_rank() == 0:
        return None
    return channel.isend(int(nbytes), dest=0, tag=_PROGRESS)


def take_progress(channel: Comm) -> list[tuple[int, int]]:
    """The progress messages that have reached rank 0 of ``channel``: (source, bytes) pairs."""
    if isinstance(channel, OneProcess):
        return []
    from mpi4py import MPI

    status, found = MPI.Status(), []
    while (message := channel.improbe(tag=_PROGRESS, status=status)) is not None:
        found.append((int(status.Get_source()), int(message.recv())))
    return found


def settle_progress(
    channel: Comm, sent: list[MPI.Request], missing: dict[int, int]
) -> list[tuple[int, int]]:
    """After an agreement: rank 0 takes the ``missing`` messages per source; senders complete.

    Every message was sent before its rank reached the agreement, so rank 0's receives
    complete; the senders' requests complete once rank 0 has them. Returns what rank 0
    took, as :func:`take_progress` does.
    """
    if isinstance(channel, OneProcess):
        return []
    from mpi4py import MPI

    taken = [
        (s, int(channel.recv(source=s, tag=_PROGRESS)))
        for s, n in missing.items()
        for _ in range(n)
    ]
    MPI.Request.waitall(sent)
    return taken


def abort(status: int) -> NoReturn:
    """End every process of the job at once (``MPI_Abort`` on COMM_WORLD): the last resort."""
    mpi = _initialised()
    if mpi is not None:
        mpi.COMM_WORLD.Abort(status)
    os._exit(status)  # a one-process job without MPI (Abort does not return)
