"""``depmod``'s stderr: each :class:`kmodsim.messages.DepmodMessage` in kmod's own
words (kmod 30 and 34 word them alike; where libkmod's log adds its source location, the message
carries it), and kmodsim's own lines (unreadable modules, the cycle explanation).

Each entry cites where kmod prints it: tools/depmod.c unless said otherwise."""

from __future__ import annotations

from collections.abc import Iterable

from ..messages import DepmodMessage

# code -> (who says it, its words; {0}, {1}, ... are the message's args)
DEPMOD_WORDS: dict[str, tuple[str, str]] = {
    # main(): getopt loop (kmod 30) and do_depmod()'s checks
    "deprecated-option": ("depmod", "WARNING: Ignored deprecated option {0}"),
    "prefix-too-long": ("depmod", "FATAL: -P only takes a single char"),
    "bad-version": ("depmod", "ERROR: Bad version passed {0}"),
    "fatal": ("depmod", "FATAL: {0}"),
    "load-kernel-symbols": ("depmod", "FATAL: could not load {0}: {1}"),   # depmod_load_symvers/system_map
    "open-directory": ("depmod", "ERROR: could not open directory {0}: {1}"),  # depmod_modules_search_path()
    "search-modules": ("depmod", "FATAL: could not search modules: {0}"),
    "not-absolute": ("depmod", "FATAL: {0}: not absolute path."),
    "create-module": ("depmod", "FATAL: could not create module {0}: {1}"),
    "hash-add-unique": ("depmod", "ERROR: hash_add_unique {0}: File exists"),  # depmod_module_add()
    "add-module": ("depmod", "FATAL: could not add module {0}: File exists"),
    # libkmod-module.c:kmod_module_new_from_path(); {0}: libkmod's log location, where it prints one
    "module-exists": ("depmod", "ERROR: {0}kmod_module '{1}' already exists with different path: "
                                "new-path='{2}' old-path='{3}'"),
    # depmod_is_path_newer() / depmod_modules_are_up_to_date() (-A)
    "fstatat-dep": ("depmod", "ERROR: could not fstatat({0}, modules.dep): {1}"),
    # cfg_file_parse()
    "config-parse": ("depmod", "ERROR: file parse {0}: {1}"),
    "config-bad-line": ("depmod", "ERROR: {0}:{1}: ignoring bad line starting with '{2}'"),
    # depmod_modules_build_array() -> depmod_load_modules_order()
    "order-open": ("depmod", "WARNING: could not open modules.order at {0}: {1}"),
    "order-corrupt": ("depmod", "ERROR: {0}/modules.order:{1} corrupted line misses '\\n'"),
    # depmod_load_symvers(), depmod_load_system_map()
    "symvers-bad-crc": ("depmod", "ERROR: {0}:{1} Invalid symbol version {2}: Success"),
    "system-map-bad-line": ("depmod", "ERROR: {0}:{1}: invalid line: {2}"),
    # depmod_load_dependencies(), -e
    "needs-symbol-source": ("depmod", "WARNING: -e needs -E or -F"),
    "unknown-symbol": ("depmod", "WARNING: {0} needs unknown symbol {1}"),
    "symbol-version": ("depmod", "WARNING: {0} disagrees about version of symbol {1}"),
    # depmod_report_cycles()
    "cycle": ("depmod", "ERROR: Cycle detected: {0}"),
    "cycles-found": ("depmod", "ERROR: Found {0} modules in dependency cycles!"),
    # output_aliases_bin() / the alias index
    "alias-bracket": ("depmod", "WARNING: Unmatched bracket in {0}"),
    "alias-duplicate": ("depmod", "WARNING: duplicate module alias:\n{0} {1}"),
    # output_builtin_bin(), output_builtin_alias_bin()
    "builtin-open": ("depmod", "WARNING: could not open modules.builtin at {0}: {1}"),
    "builtin-bad-line": ("depmod", "ERROR: Invalid modules.builtin line: {0}"),
    "builtin-modinfo-open": ("depmod", "WARNING: could not open modules.builtin.modinfo at {0}: {1}"),
    # output_devname()
    "devname-no-numbers": ("depmod", "ERROR: Module '{0}' has devname ({1}) but lacks major and minor "
                                     "information. Ignoring."),
    # kmodsim's own
    "unreadable": ("kmodsim", "{0}: {1}"),
    "cycle-walk-cut": ("kmodsim", "depmod's cycle report does not end on this graph (its walk goes round a "
                                  "cycle for ever, or overflows its stack): cut here"),
    "cycle-explained": ("kmodsim", "cycle {0} of {1}: {2}"),
    "cycle-edge": ("kmodsim", "  {0} needs {1}: {2}"),
}


def depmod_line(msg: DepmodMessage) -> str:
    who, words = DEPMOD_WORDS[msg.code]
    return f"{who}: {words.format(*msg.args)}\n"


def depmod_stderr(messages: Iterable[DepmodMessage]) -> str:
    """The messages as depmod (and kmodsim) print them, one line each, in their order."""
    return "".join(map(depmod_line, messages))
