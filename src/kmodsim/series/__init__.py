"""``kmodsim series``: every step of a patch series applied, built with kbuild, checked and measured.

:func:`run_series` takes a :class:`SeriesRequest` (a tree, a target's headers, a git range or patch
files) and returns a :class:`SeriesResult`: one :class:`Step` a row — applies, builds, links (new
findings against the step before), exports moved between modules, each module's footprint with
its delta — and the first bad step. Reading patch files (``git format-patch``, mbox, quilt) is
:mod:`kmodsim.series.patches`; the steps are :mod:`kmodsim.series.steps`; ``--reorder``'s search
for an order in which every step is good is :mod:`kmodsim.series.reorder`; the text and JSON forms
are :mod:`kmodsim.render.series`'s.
"""

from __future__ import annotations

from .patches import Patch, PatchError, read_series
from .reorder import Need, Reorder, RuledOut
from .steps import (
    Applied,
    Built,
    ModuleState,
    Moved,
    OpsCounts,
    SeriesError,
    SeriesRequest,
    SeriesResult,
    Step,
    run_series,
)

__all__ = ["Applied", "Built", "ModuleState", "Moved", "Need", "OpsCounts", "Patch", "PatchError", "Reorder",
           "RuledOut", "SeriesError", "SeriesRequest", "SeriesResult", "Step", "read_series", "run_series"]
