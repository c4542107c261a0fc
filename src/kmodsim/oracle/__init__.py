"""The real kernel as the loader model's oracle: a script run under QEMU (see run.py)."""

from .run import OracleError, run_on_kernel

__all__ = ["OracleError", "run_on_kernel"]
