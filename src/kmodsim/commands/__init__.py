"""Sub-commands of the ``kmodsim`` CLI: each parses its arguments, calls the library, renders."""
