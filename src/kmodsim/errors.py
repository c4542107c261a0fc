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
