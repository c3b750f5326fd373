"""Dataset selection by path globs over the hierarchy (pure, no h5py).

``*`` and ``?`` match within one path component, ``**`` matches any number of components,
``[abc]`` a character class. Patterns are absolute (a missing leading ``/`` is added).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence

from h5par.errors import UsageError

__all__ = ["glob_regex", "matches", "on_paths", "select_paths"]


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a hierarchy glob.

    Examples
    --------
    >>> bool(glob_regex("/*/temperature").match("/15/temperature"))
    True
    >>> bool(glob_regex("/*/temperature").match("/a/b/temperature"))
    False
    >>> bool(glob_regex("/station*/**").match("/station2/wind/u"))
    True
    """
    if not pattern.startswith("/"):
        pattern = "/" + pattern
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("/**", i):
            out.append("(?:/.*)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            out.append("[" + pattern[i + 1 : end].replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(pattern: str, path: str) -> bool:
    """True when dataset ``path`` is the one ``pattern`` names or matches its glob.

    A dataset's own name matches itself, whatever it holds (``/x[1]`` is that dataset, not
    ``/x1``).

    >>> matches("/x[1]", "/x[1]"), matches("/x[1]", "/x1"), matches("x*", "/x1")
    (True, True, True)
    """
    name = pattern if pattern.startswith("/") else "/" + pattern
    return name == path or glob_regex(pattern).fullmatch(path) is not None


def select_paths(paths: Sequence[str], patterns: Iterable[str] | None) -> list[str]:
    """The paths matching any pattern, in the order of ``paths``; all when no patterns.

    A pattern that matches nothing is an error naming it.

    Examples
    --------
    >>> select_paths(["/a/t", "/b/t", "/b/p"], ["/*/t"])
    ['/a/t', '/b/t']
    >>> select_paths(["/a/t"], ["/nope"])
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: dataset pattern '/nope' matches no dataset (datasets: /a/t)
    """
    if patterns is None:
        return list(paths)
    if isinstance(patterns, str):
        patterns = [patterns]
    chosen: set[str] = set()
    for pattern in patterns:
        name = pattern if pattern.startswith("/") else "/" + pattern
        regex = glob_regex(pattern)
        hits = {name} if name in paths else {p for p in paths if regex.match(p)}
        if not hits:
            listing = ", ".join(paths[:10]) + (", ..." if len(paths) > 10 else "")
            raise UsageError(
                f"dataset pattern {pattern!r} matches no dataset (datasets: {listing or 'none'})"
            )
        chosen |= hits
    return [p for p in paths if p in chosen]


def on_paths(paths: Collection[str]) -> set[str]:
    """``paths`` and every group above them (the root aside).

    >>> sorted(on_paths(["/a/b/c", "/d"]))
    ['/a', '/a/b', '/a/b/c', '/d']
    """
    found: set[str] = set()
    for path in paths:
        parts = path.strip("/").split("/")
        found.update("/" + "/".join(parts[: k + 1]) for k in range(len(parts)))
    return found
