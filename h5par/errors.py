"""The exceptions h5par raises (standard library only: every layer imports this module).

How failures on some ranks become one error on every rank is :mod:`h5par.parallel.agreement`.
"""

from __future__ import annotations

__all__ = [
    "CollectiveError",
    "CollectiveUsageError",
    "H5ParError",
    "JobProblemsError",
    "StoppedError",
    "UsageError",
]


class H5ParError(Exception):
    """A failure h5par reports as one clear line (exit status 1).

    ``agreed`` errors are raised on every rank with the same message (printed once).
    """

    exit_status = 1
    agreed = False


class UsageError(H5ParError, ValueError):
    """A bad argument, job key, kernel parameter or input path (exit status 2).

    Raised before anything is opened for writing.
    """

    exit_status = 2


class JobProblemsError(UsageError):
    """Every problem found in a job (``h5par plan`` checks all files and datasets).

    Attributes
    ----------
    problems : list of str
        One line each, in the order found; the message is the first and how many more.
    """

    def __init__(self, problems: list[str]) -> None:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}")
        self.problems = list(problems)


class CollectiveError(H5ParError):
    """The same failure, raised on every rank after one or more ranks failed.

    Attributes
    ----------
    rank : int
        The lowest failing rank.
    host : str
        Host name of that rank.
    exit_status : int
        Exit status the failing rank's exception asked for.
    """

    def __init__(self, message: str, rank: int, host: str, exit_status: int) -> None:
        super().__init__(message)
        self.agreed = True
        self.rank = rank
        self.host = host
        self.exit_status = exit_status


class CollectiveUsageError(CollectiveError, UsageError):
    """A usage error agreed on by every rank (exit status 2)."""


class StoppedError(H5ParError):
    """Every rank stopped at a block boundary on a stop signal; the job resumes (status 75)."""

    exit_status = 75
    agreed = True
