"""The real kernel as the loader model's oracle: a script run under QEMU (see boot.py: boot it with the script, read back its console)."""

from .boot import OracleError, run_on_kernel

__all__ = ["OracleError", "run_on_kernel"]
