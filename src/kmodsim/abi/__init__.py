"""``kmodsim abi``: what a kernel update changes in the exports modules link against.

* :mod:`kmodsim.abi.sides` — one side of a comparison: what a kernel (headers directory,
  Module.symvers, vmlinux, vmlinuz) or a module tree / root file system exports, one
  :class:`~kmodsim.abi.sides.AbiExport` (CRC, owner, GPL-only, namespace) a name;
* :mod:`kmodsim.abi.diff` — two sides compared export by export (``abi diff``), and a
  distribution's kernels in order (``abi history``).

The text and JSON forms are :mod:`kmodsim.render.abi`'s; docs/abi.md documents them.
"""

from __future__ import annotations

from .diff import (
    CHANGE_KINDS,
    AbiChange,
    AbiDiff,
    AbiDiffRequest,
    AbiHistory,
    AbiHistoryRequest,
    AbiStep,
    compare,
    diff_exports,
    diff_sides,
    history,
)
from .sides import AbiError, AbiExport, AbiSide, load_side

__all__ = ["CHANGE_KINDS", "AbiChange", "AbiDiff", "AbiDiffRequest", "AbiError", "AbiExport", "AbiHistory",
           "AbiHistoryRequest", "AbiSide", "AbiStep", "compare", "diff_exports", "diff_sides", "history", "load_side"]
