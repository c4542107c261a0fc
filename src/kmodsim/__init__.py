"""kmodsim: model, check and verify how Linux kernel modules link and load.

The public Python API is :data:`__all__` (docs/api.md): :func:`read_module`, :func:`load_target`
and :class:`Target`, :func:`scan`, :func:`check`, :func:`ldd`, :func:`depmod`, :func:`load`,
:func:`verify`, :func:`footprint`, :func:`ops_census`, :func:`abi_diff`, :func:`abi_history`, :func:`abi_check`, :func:`abi_check_kernels`,
:func:`check_series` (all in :mod:`kmodsim.api`), and
:class:`Error`, the root of every error the library raises (:mod:`kmodsim.errors`).

The API's names are imported on first use (PEP 562), so that ``import kmodsim`` — which every
command does — costs the CLI's start-up nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import Error

if TYPE_CHECKING:
    from .api import (
        Target,
        abi_check,
        abi_check_kernels,
        abi_diff,
        abi_history,
        check,
        check_series,
        depmod,
        footprint,
        ldd,
        load,
        load_target,
        ops_census,
        read_module,
        scan,
        verify,
    )

__version__ = "0.1.0"
__all__ = ["Error", "Target", "__version__", "abi_check", "abi_check_kernels", "abi_diff", "abi_history", "check", "check_series",
           "depmod", "footprint", "ldd", "load", "load_target", "ops_census", "read_module", "scan", "verify"]

_API = frozenset(__all__) - {"Error", "__version__"}


def __getattr__(name: str) -> object:
    if name in _API:
        from . import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kmodsim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)
