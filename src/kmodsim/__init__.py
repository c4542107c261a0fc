"""kmodsim: model, check and verify how Linux kernel modules link and load."""

__version__ = "0.1.0"
