"""The root of kmodsim's errors.

Every error the library raises for its caller derives from :class:`Error`, so a library user can
write ``except kmodsim.Error``. ``str()`` of one is the single line the CLI prints after
``kmodsim: `` — for an input at fault, ``<file>: <problem>`` — and ``path`` names that input where
the error has one (None otherwise). Errors used only for control flow inside one module
(``deps._Bad``, ``loader.model._Fail``) are caught where they are raised and are not part of this.
"""

from __future__ import annotations


class Error(Exception):
    """Base class of every error kmodsim raises (see the module docstring)."""

    path: str | None = None


class PathError(Error):
    """An error about one input (a file, a directory, a range of commits): ``str()`` is
    ``<path>: <problem>``, and ``path`` and ``problem`` name them apart."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem

    def __reduce__(self) -> tuple[type, tuple[str | None, str]]:
        # made again from its two parts, not from the joined message: an error raised in a task
        # on another machine (kmodsim.cluster) arrives pickled
        return type(self), (self.path, self.problem)


class KmodsimWarning(UserWarning):
    """What the library reports without stopping (a cache it cannot write: that only costs time).
    It goes through Python's :mod:`warnings` — the library never prints; ``kmodsim``'s CLI shows
    each as one ``kmodsim: warning: <text>`` line, a library user filters or records them as any
    warning."""
