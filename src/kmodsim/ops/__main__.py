"""``python -m kmodsim.ops ...`` runs ``kmodsim ops ...`` without the main command group."""

import sys

from .cli import ops_cmd

if __name__ == "__main__":
    ops_cmd.main(sys.argv[1:], prog="kmodsim ops")
