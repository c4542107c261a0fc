"""depmod, re-implemented: module dependencies, modules.* files byte-identical to kmod 30's, cycles
with the symbols behind each edge, and answers to "why does A need B".

The rules are kmod 30's (``tools/depmod.c`` and ``libkmod/libkmod-elf.c``), re-stated here:

* Discovery: a recursive walk of ``<basedir>/lib/modules/<kver>`` in ``readdir`` order, skipping
  ``.``, ``..``, ``build``, ``source`` and the ``exclude`` directories of depmod.d, keeping files
  that end in ``.ko``, ``.ko.xz`` or ``.ko.zst`` (kmod as Debian builds it: ``+XZ +ZSTD -ZLIB``).
  The module name is the file name up to its first ``.``, with ``-`` turned into ``_``. Two files
  with one name: the one in the higher-priority ``search`` directory wins (default: ``updates``
  over everything else), ``override`` lines first; on a tie the first one found stays. (This
  discovery, :mod:`kmodsim.discovery`, is the one every kmodsim command uses.)
* Order of modules (the line order of modules.dep, .alias, .softdep, .devname): kmod's hash table of
  names (512 buckets, Paul Hsieh's SuperFastHash, names sorted by ``strcmp`` inside a bucket), then
  a stable sort that puts the modules of ``modules.order`` first, in that file's order (the last
  line naming a module counts). Without a (well-formed) modules.order the hash order stays.
* Exports, as libkmod reads them: every ``__crc_<S>`` symbol, with its CRC (an absolute value, or a
  u32 in the section it points into); a module with no ``__crc_`` symbol exports every string of
  its ``__ksymtab_strings`` (CRC 0). Names and CRCs go into one table (2048 buckets, same hash), in
  module order, after the kernel's symbols of ``-E``/``-F``: a later exporter replaces an earlier
  one, so of two modules exporting a name the *last* in modules.dep order owns it.
* Imports: the named undefined symbols of ``.symtab`` in table order (weak ones included: a weak
  import that resolves still makes a dependency), then the ``__versions`` entries no symbol matched
  (``module_layout``). The dependencies of a module are the distinct owners, in first-use order.
* A topological sort (a LIFO of the modules nobody uses, in module order) numbers the modules; a
  modules.dep line lists every module reachable from its module, sorted by that number. A cycle
  stops depmod before it writes anything (exit 1); its report is reproduced line for line, and
  kmodsim adds every elementary cycle with the symbols behind each edge.
* modules.symbols lists the owned symbols in the symbol table's bucket order; modules.alias and
  modules.softdep the ``alias=``/``softdep=`` strings of ``.modinfo`` in file order; modules.devname
  pairs a ``devname:`` alias with a ``char-major-M-m``/``block-major-M-m`` one.
* The .bin indexes (on request) are kmod's radix trees of the same keys and values
  (:class:`Index`), plus modules.builtin and modules.builtin.modinfo.

Reading is parallel and cached (:class:`kmodsim.tree.ScanCache`, one file per tree under
``$KMODSIM_CACHE/depmod-v1``, each file checked against the record's derived version), keyed
like kmodsim's scan cache by path, size, mtime, ctime and inode. The cached record is kmod's view
of the module (:func:`kmod_view`: libkmod's rules over kmodsim's ELF reader), not kmodsim's
general one, so that outputs are byte-identical to depmod's also on odd modules.

See docs/depmod.md for the details and the commands. The package, in the order a run goes:

* :mod:`.plan` — what a run reads: configuration, discovery, the kernel symbol file, stat keys
  (:func:`plan`), and the records of its modules, from the cache or read in parallel
  (:func:`load_records`); :class:`DepmodError`.
* :mod:`.kmod_view` — libkmod's view of one module (the record: exports and CRCs, imports,
  aliases, softdeps).
* :mod:`.kernel_symbols` — ``-E`` (Module.symvers) and ``-F`` (System.map).
* :mod:`.graph` — :func:`compute`: module order, symbol owners, dependencies, topological sort
  (:class:`Depmod`, :func:`run`).
* :mod:`.cycles` — depmod's cycle report and kmodsim's (every elementary cycle, with symbols).
* :mod:`.outputs` — the modules.* files (:func:`outputs`), writing them (:func:`write_outputs`),
  ``-A`` (:func:`up_to_date`).
* :mod:`.index` — kmod's binary index format (the .bin files).
* :mod:`.result` — what ``kmodsim depmod`` prints, writes and exits with, memoised
  (:func:`depmod_result`).
* :mod:`.why` — why A needs B, and the dependency tree of one module.
"""

from __future__ import annotations

from .cycles import cycle_report
from .graph import Depmod, Mod, compute, run
from .index import Index
from .kmod_versions import KMOD_VERSIONS, KmodVersion, kmod_version
from .kmod_view import kmod_view, read_record, read_records
from .outputs import HEADERS, TEXT_FILES, is_version_number, outputs, text_files, up_to_date, write_outputs
from .plan import DepmodError, Plan, load_records, plan, tree_dirname
from .result import Result, depmod_result
from .why import chains, dep_tree, render_tree, why

__all__ = [
    "HEADERS", "KMOD_VERSIONS", "TEXT_FILES", "Depmod", "DepmodError", "Index", "KmodVersion", "Mod", "Plan",
    "Result", "chains", "compute", "cycle_report", "dep_tree", "depmod_result", "is_version_number",
    "kmod_version", "kmod_view", "load_records", "outputs", "plan", "read_record", "read_records",
    "render_tree", "run", "text_files", "tree_dirname", "up_to_date", "why", "write_outputs",
]
