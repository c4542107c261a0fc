"""``python -m kmodsim.ops ...`` runs ``kmodsim ops ...`` without the main command group."""

from .cli import ops_cmd

if __name__ == "__main__":
    ops_cmd(prog_name="kmodsim ops")
