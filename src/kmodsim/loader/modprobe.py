"""What ``modprobe NAME [args]`` inserts, in which order, with which options, as kmod's modprobe
does it (kmod 30 and 34 alike: libkmod's probe list did not change between them): the modules.dep
dependencies of the module, and the soft dependencies of each — ``softdep`` lines of the modprobe.d
files (``-C``) and of modules.softdep (``MODULE_SOFTDEP()`` of ``.modinfo``, as depmod writes it).

libkmod (libkmod/libkmod-module.c, kmod 30 and 34.2):

* ``kmod_module_probe_insert_module()``: a module already in the kernel is left alone (return 0,
  nothing looked at); else its probe list is built and inserted in order — a module of the list
  already loaded is passed over (``-EEXIST``, ignored), options are the modprobe.d ``options`` of
  the module (or of the alias it was found by) followed by the command line's, which only the
  requested module itself gets (``m == mod``); the errors of modules that are not *required* (the
  requested module and its modules.dep dependencies are; softdeps are not) are ignored, a required
  one's stops the list.
* ``__kmod_module_get_probe_list()``: a module is visited once (the ``visited`` flag of its
  ``kmod_module``); for each dependency (modules.dep, deepest first) ``__kmod_module_fill_softdep()``,
  then for the module itself.
* ``__kmod_module_fill_softdep()``: the pre softdeps' probe lists (recursively), the module, the
  post softdeps' probe lists. A dependency is appended even when it is on the list already
  (only the walk *into* a module checks ``visited``): lists repeat modules, the later copies
  are passed over as loaded.
* ``kmod_module_get_softdeps()``: the first softdep line whose module pattern ``fnmatch()``es the
  module's name; each name of it looked up with ``kmod_module_new_from_lookup()`` (below); a name
  nothing answers to is dropped silently.
* ``kmod_module_new_from_lookup()``: the first source that answers — modprobe.d ``alias``
  (patterns, every match), a module of modules.dep, ``symbol:`` names of modules.symbols,
  ``install``/``remove`` commands, modules.alias (patterns), modules.builtin. A module found by an
  alias is another ``kmod_module`` than the same module found by name (its pool key is
  ``name\\alias``): its own ``visited`` and ``required`` flags, so it may be on the list twice.

libkmod-config.c (``kmod_config_new()``): the configuration files — each ``-C`` path (a file, or
a directory's ``*.conf`` files), modules.softdep and (kmod 33+) modules.weakdep of the tree — read
in the order of their file names (``conf_files_insert_sorted()``; a name met twice is read once),
so a ``kmsd.conf`` comes before modules.softdep and its softdep line wins. Without ``-C`` the
default directories of the kmod version (libkmod.c ``default_config_paths``) are read.

A builtin module (modules.builtin, or an alias of modules.builtin.modinfo) is on the list and
passed over as in the kernel (``module_is_inkernel()``). Not modelled: ``install`` commands (refused with an error
when modprobe would run one), the kernel command line's ``modprobe.blacklist=`` and
``module.param=`` (kmod reads /proc/cmdline), blacklists (they apply only to a requested alias).
Weak dependencies (``weakdep``, modules.weakdep, kmod 33+) are never inserted by modprobe
(libkmod's ``kmod_module_get_weakdeps()`` serves initramfs tools): :func:`weakdeps` lists them so
that a run can report them.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field

from ..dependencies.index import alias_normalize
from ..errors import Error


@dataclass
class ModprobeConfig:
    """The modprobe.d commands kmodsim's modprobe model reads, each list in file order."""
    aliases: list[tuple[str, str]] = field(default_factory=list)  # (pattern, module)
    options: list[tuple[str, str]] = field(default_factory=list)  # (module or alias, options)
    softdeps: list[tuple[str, list[str], list[str]]] = field(default_factory=list)  # (pattern, pre, post)
    weakdeps: list[tuple[str, list[str]]] = field(default_factory=list)  # (pattern, names), kmod 33+
    commands: dict[str, str] = field(default_factory=dict)  # module -> its first install/remove command


def _str(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _underscores(s: str) -> str | None:
    """libkmod-config.c underscores(): '-' becomes '_' outside brackets; None for a bad bracket."""
    b = alias_normalize(s.encode("utf-8", "surrogateescape"))
    return None if b is None else _str(b)


def _lines(data: bytes):
    """shared/util.c freadline_wrapped(): a backslash and a newline join two lines; a backslash
    before any other character is dropped."""
    text = _str(data)
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            yield "".join(buf)
            buf = []
        elif c == "\\" and i + 1 < n:
            i += 1
            if text[i] != "\n":
                buf.append(text[i])
        else:
            buf.append(c)
        i += 1
    if buf:
        yield "".join(buf)


class _Strtok:
    """strtok_r() over one line: ``next(" \t")`` a token, ``rest()`` the remainder (strtok_r with
    an empty delimiter set: everything after the separator that ended the last token)."""

    def __init__(self, line: str) -> None:
        self.s, self.pos = line, 0

    def next(self) -> str | None:
        s, i = self.s, self.pos
        while i < len(s) and s[i] in " \t":
            i += 1
        if i >= len(s):
            self.pos = i
            return None
        j = i
        while j < len(s) and s[j] not in " \t":
            j += 1
        self.pos = j + 1  # the separator is overwritten with NUL; the next call starts after it
        return s[i:j]

    def rest(self) -> str | None:
        r = self.s[self.pos:]
        self.pos = len(self.s)
        return r or None


_C_SPACE = " \t\n\v\f\r"  # isspace() in the C locale


def _dep_tokens(line: str) -> list[str]:
    """The words of a softdep/weakdep line as kmod_config_add_softdep() and
    kmod_config_add_weakdep() scan them. One quirk kept: a single blank at the start is not
    skipped but taken into the first word (``softdep m  pre: x`` — two blanks after the module —
    yields the word `` pre:``, no mode, and x is dropped)."""
    out: list[str] = []
    p = 0
    was_space = False
    i, n = 0, len(line)
    while True:
        end = i >= n
        if not end:
            if line[i] not in _C_SPACE:
                was_space = False
                i += 1
                continue
            if was_space:
                p = i + 1
                i += 1
                continue
            was_space = True
            if p >= i:
                i += 1
                continue
        if not end or not was_space:
            out.append(line[p:i])
        p = i + 1
        if end:
            break
        i += 1
    return out


def parse_config(cfg: ModprobeConfig, data: bytes, weakdep: bool) -> None:
    """kmod_config_parse(): the commands of one file (``weakdep`` lines only with ``weakdep``, kmod
    33+; the rest — blacklist, include, bad lines — change nothing kmodsim models)."""
    for line in _lines(data):
        if not line or line[0] == "#":
            continue
        tok = _Strtok(line)
        cmd = tok.next()
        if cmd is None:
            continue
        if cmd == "alias":
            a, m = tok.next(), tok.next()
            ua = _underscores(a) if a is not None else None
            um = _underscores(m) if m is not None else None
            if ua is not None and um is not None:
                cfg.aliases.append((ua, um))
            continue
        if cmd not in ("options", "install", "remove", "softdep", "weakdep") or (cmd == "weakdep" and not weakdep):
            continue
        name = tok.next()
        m = _underscores(name) if name is not None else None
        rest = tok.rest()
        if m is None or rest is None:
            continue
        if cmd == "options":
            cfg.options.append((m, rest.replace("\t", " ")))
        elif cmd == "install":
            cfg.commands.setdefault(m, rest)
        elif cmd == "softdep":  # kmod_config_add_softdep()
            pre: list[str] = []
            post: list[str] = []
            mode: list[str] | None = None
            for w in _dep_tokens(rest):
                if w == "pre:":
                    mode = pre
                elif w == "post:":
                    mode = post
                elif mode is not None:
                    mode.append(w)
            cfg.softdeps.append((m, pre, post))
        elif cmd == "weakdep":  # kmod_config_add_weakdep(), kmod 33+
            cfg.weakdeps.append((m, _dep_tokens(rest)))


def default_config_paths(kmod) -> list[str]:
    """libkmod.c ``default_config_paths``: the depmod.d directories' modprobe.d twins (kmod 32+
    adds DISTCONFDIR, /usr/lib as Debian builds it, to both lists: 8463809)."""
    return [p.replace("/depmod.d", "/modprobe.d") for p in kmod.cfg_paths]


def load_config(dm, config_paths: list[str] | None, kmod) -> ModprobeConfig:
    """kmod_config_new(): modules.softdep (and kmod 33+'s modules.weakdep) as ``dm``'s depmod writes
    them, and the files of ``config_paths`` (None: the version's defaults), read in file-name order."""
    from ..dependencies.outputs import output_softdep, output_weakdep

    files: dict[str, tuple[str, bytes | None]] = {}  # name -> (path, contents when generated)

    def insert(name: str, path: str, data: bytes | None = None) -> None:
        files.setdefault(name, (path, data))  # conf_files_insert_sorted(): a name is read once

    insert("modules.softdep", "", output_softdep(dm))
    if kmod.weakdep:
        insert("modules.weakdep", "", output_weakdep(dm))
    for path in default_config_paths(kmod) if config_paths is None else config_paths:
        if os.path.isdir(path):
            try:
                names = sorted(os.listdir(path))
            except OSError:
                continue
            for n in names:  # conf_files_filter_out()
                if n.startswith(".") or len(n) < 6 or not n.endswith(".conf"):
                    continue
                if not os.path.isdir(os.path.join(path, n)):
                    insert(n, os.path.join(path, n))
        elif os.path.exists(path):
            insert(os.path.basename(path), path)
    cfg = ModprobeConfig()
    for name in sorted(files):
        path, data = files[name]
        if data is None:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
        parse_config(cfg, data, kmod.weakdep)
    return cfg


@dataclass
class Entry:
    """One module of a probe list: its name, its file ("" when the tree has none), the options it
    is inserted with, and whether its error stops modprobe."""
    name: str
    path: str
    args: str
    required: bool
    requested: bool  # the module modprobe was asked for (the script's init= and #> lines are its)
    builtin: bool = False  # in modules.builtin: in the kernel already, passed over


class ProbeError(Error):
    """A probe list kmodsim cannot model (an install command that would run)."""


class _Mod:
    __slots__ = ("name", "alias", "key", "idx", "ignorecmd")

    def __init__(self, name: str, alias: str | None, idx: int | None) -> None:
        self.name = name
        self.alias = alias
        self.key = name if alias is None else f"{name}\\{alias}"  # kmod_module_new_from_alias()
        self.idx = idx
        self.ignorecmd = False


class Modprobe:
    """kmod's modprobe over ``dm`` (depmod's model of the tree) and ``cfg``."""

    def __init__(self, dm, cfg: ModprobeConfig) -> None:
        self.dm = dm
        self.cfg = cfg
        self.pool: dict[str, _Mod] = {}
        self._aliases: list[tuple[str, str]] | None = None
        self._builtin: tuple[set[str], list[tuple[str, str]]] | None = None

    def _mod(self, name: str, alias: str | None = None) -> _Mod:
        m = _Mod(name, alias, None)
        m = self.pool.setdefault(m.key, m)
        if m.idx is None:
            i = self.dm.index_of(name)
            m.idx = i if i is not None and self.dm.mods[i].name == name else None
        return m

    def _alias_file(self) -> list[tuple[str, str]]:
        """modules.alias: (normalised pattern, module) in depmod's order."""
        if self._aliases is None:
            out = []
            for m in self.dm.mods:
                if m.rec.aliases:
                    for a in m.rec.aliases[:-1].split(b"\0"):
                        n = alias_normalize(a)
                        if n is not None:
                            out.append((n.decode("utf-8", "surrogateescape"), m.name))
            self._aliases = out
        return self._aliases

    def builtin(self) -> tuple[set[str], list[tuple[str, str]]]:
        """The tree's builtin modules (modules.builtin) and their aliases (``<module>.alias=``
        strings of modules.builtin.modinfo, normalised), as depmod's modules.builtin.bin and
        modules.builtin.alias.bin hold them; empty without those files."""
        if self._builtin is None:
            from ..dependencies.index import builtin_aliases, builtin_names

            names = {_str(n) for n in builtin_names(self.dm.dirname, []) or ()}
            aliases = [(_str(a), _str(m)) for a, m in builtin_aliases(self.dm.dirname, []) or ()]
            self._builtin = (names, aliases)
        return self._builtin

    def lookup(self, given: str) -> list[_Mod]:
        """kmod_module_new_from_lookup(): the modules ``given`` names (none: nothing answers)."""
        name = _underscores(given)
        if name is None:  # alias_normalize() refuses it: "failed to lookup ..., continuing anyway"
            return []
        found = [self._mod(m, a) for a, m in self.cfg.aliases if fnmatch.fnmatchcase(name, a)]
        if found:  # kmod_lookup_alias_from_config()
            return found
        if ":" not in name:  # kmod_lookup_alias_from_moddep_file()
            i = self.dm.index_of(name)
            if i is not None and self.dm.mods[i].name == name:
                return [self._mod(name)]
        if name.startswith("symbol:"):  # kmod_lookup_alias_from_symbols_file()
            owner = self.dm.find(name[7:].encode("utf-8", "surrogateescape"))
            if owner is not None and owner[0] is not None:
                return [self._mod(self.dm.mods[owner[0]].name, name)]
        if name in self.cfg.commands:  # kmod_lookup_alias_from_commands()
            return [self._mod(name)]
        found = [self._mod(m, name) for a, m in self._alias_file() if fnmatch.fnmatchcase(name, a)]
        if found:  # kmod_lookup_alias_from_aliases_file()
            return found
        names, aliases = self.builtin()
        if name in names:  # kmod_lookup_alias_from_builtin_file()
            return [self._mod(name)]
        # kmod_lookup_alias_from_kernel_builtin_file()
        return [self._mod(m, name) for a, m in aliases if fnmatch.fnmatchcase(name, a)]

    def _softdeps(self, m: _Mod) -> tuple[list[_Mod], list[_Mod]]:
        """kmod_module_get_softdeps(): the first matching softdep line, its names looked up."""
        for pattern, pre, post in self.cfg.softdeps:
            if fnmatch.fnmatchcase(m.name, pattern):
                return ([x for n in pre for x in self.lookup(n)], [x for n in post for x in self.lookup(n)])
        return [], []

    def _deps(self, m: _Mod) -> list[_Mod]:
        """kmod_module_get_dependencies(): modules.dep's line, deepest first (parse_depline prepends)."""
        if m.idx is None:
            return []
        return [self._mod(self.dm.mods[k].name) for k in reversed(self.dm.closure(m.idx))]

    def probe_list(self, name: str, extra: str) -> list[Entry]:
        """kmod_module_get_probe_list() of module ``name`` (in the tree, or builtin) and the options
        of each entry (``extra``: the command line's, for ``name`` only). Raises :class:`ProbeError`."""
        top = self._mod(name)
        if top.idx is None and name in self.builtin()[0]:  # module_is_inkernel(): nothing to do
            return [Entry(name, "", extra, True, True, True)]
        visited: set[str] = set()
        required: set[str] = set()
        out: list[_Mod] = []

        def get_probe_list(m: _Mod, req: bool) -> None:
            if m.key in visited:
                return
            visited.add(m.key)
            deps = self._deps(m)
            if req:
                required.add(m.key)
                required.update(d.key for d in deps)
            for d in deps:
                fill_softdep(d)
            fill_softdep(m)

        def fill_softdep(m: _Mod) -> None:
            pre, post = self._softdeps(m)
            for x in pre:
                get_probe_list(x, False)
            out.append(m)
            m.ignorecmd = bool(pre or post)
            for x in post:
                get_probe_list(x, False)

        get_probe_list(top, True)
        entries = []
        for m in out:
            if m.name in self.cfg.commands and not m.ignorecmd:
                raise ProbeError(f"modprobe would run the install command of {m.name} "
                                 f"({self.cfg.commands[m.name]!r}): install commands are not modelled")
            opts = [o for n, o in self.cfg.options if n == m.name or (m.alias is not None and n == m.alias)]
            conf = " ".join(opts) if opts else None
            xopt = extra if m is top else ""
            # module_options_concat(): the configured options and a space, then the command line's
            args = (conf + " " if conf is not None else "") + xopt if (conf or xopt) else ""
            path = self.dm.mods[m.idx].path if m.idx is not None else ""
            # kmod_module_is_builtin(): by name, in modules.builtin (module_is_inkernel() then)
            entries.append(Entry(m.name, path, args, m.key in required, m is top, m.name in self.builtin()[0]))
        return entries

    def weakdeps(self, name: str) -> list[str]:
        """kmod_module_get_weakdeps() of module ``name``: the names of the first matching
        ``weakdep`` line (kmod 33+), looked up as softdeps are. modprobe never inserts them."""
        m = self._mod(name)
        for pattern, names in self.cfg.weakdeps:
            if fnmatch.fnmatchcase(m.name, pattern):
                return [x.name for n in names for x in self.lookup(n)]
        return []
