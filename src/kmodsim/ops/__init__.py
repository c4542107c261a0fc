"""``kmodsim ops``: an ops-table census of kernel C source, and its binary counterpart.

* :mod:`kmodsim.ops.parse` -- tree-sitter plumbing: kernel-macro masking, parse-error reporting;
* :mod:`kmodsim.ops.census` -- the passes: struct members, instances, call sites in every idiom,
  NULL tests, runtime assignments, X-macro lists; per-member classification;
* :mod:`kmodsim.ops.plan` -- the ranked devirtualization plan;
* :mod:`kmodsim.ops.emit` -- ``--emit xmacro`` and ``--emit patch``;
* :mod:`kmodsim.ops.render` -- JSON (schema ``kmodsim.ops/1``) and text rendering;
* :mod:`kmodsim.ops.binary` -- ELF relocation reader: indirect-thunk calls and static-call sites in
  ``.ko`` files;
* :mod:`kmodsim.ops.cli` -- the ``kmodsim ops`` command (``ops_cmd``).

Library use::

    from kmodsim.ops import load_inputs, run_census
    inputs, errors, root = load_inputs(["arch/x86/kvm", "arch/x86/include"])
    census = run_census("kvm_x86_ops", inputs)
"""

from __future__ import annotations

from .census import Census, CensusError, load_inputs, run_census

__all__ = ["Census", "CensusError", "load_inputs", "run_census"]
