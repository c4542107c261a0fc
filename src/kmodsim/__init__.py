"""kmodsim: model, check and verify how Linux kernel modules link and load.

``kmodsim.Error`` is the root of every error the library raises (:mod:`kmodsim.errors`).
"""

from .errors import Error

__version__ = "0.1.0"
__all__ = ["Error", "__version__"]
