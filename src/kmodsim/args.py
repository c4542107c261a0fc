"""Declaring sub-commands: decorators over :mod:`argparse`.

Each command module declares its command with :func:`command`, :func:`option` and
:func:`argument` — the decorator style of click, which kmodsim used at first — and
:mod:`kmodsim.cli` builds an argparse parser for the one command that runs. It is not click because
importing click costs every invocation ~25 ms (a third of a warm ``scan``, measured with
``python -X importtime``), argparse ~5 ms; and kmodsim needs only this much of a CLI library.

What a parameter may say: option declarations (``"-j", "--jobs"``, plus a bare name for the
Python parameter), ``type`` (a callable, :func:`path`, :class:`Choice`, :class:`IntRange`),
``default``, ``is_flag``, ``count``, ``multiple`` (a tuple), ``required``, ``metavar``, ``help``,
``show_default``, ``hidden`` and ``callback(ctx, param, value)`` (``ctx`` is None); an argument
``nargs=-1`` (a tuple, any number; at least one when ``required``) or one value (optional unless
``required``). A usage error exits 2 with argparse's usage line and ``kmodsim <cmd>: error: ...``.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable

from .errors import Error


class UsageError(Error):
    """Bad command-line usage found by a command itself: exit 2, with the usage line."""


class BadParameter(UsageError):
    """A parameter's value is wrong (raised by a ``type`` or a ``callback``)."""


def path(text: str) -> str:
    """The type of a file-system path argument: the text as given. Whether it exists, and is a
    file or a directory, is the command's business: it reports each bad input in one line and goes
    on with the others instead of stopping the run at argument parsing."""
    return text


class Choice:
    def __init__(self, choices) -> None:
        self.choices = list(choices)


class IntRange:
    def __init__(self, min: int | None = None, max: int | None = None) -> None:  # noqa: A002
        self.min, self.max = min, max

    def __call__(self, text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
            lo = "" if self.min is None else f">={self.min}"
            hi = "" if self.max is None else f"<={self.max}"
            raise argparse.ArgumentTypeError(f"{v} is not in the range {lo}{' and ' if lo and hi else ''}{hi}")
        return v


class Param:
    def __init__(self, kind: str, decls: tuple[str, ...], kw: dict) -> None:
        self.kind, self.kw = kind, kw
        flags = [d for d in decls if d.startswith("-")]
        names = [d for d in decls if not d.startswith("-")]
        self.opts = flags
        if names:
            self.name = names[0]
        else:
            longest = max(flags, key=len)
            self.name = longest.lstrip("-").replace("-", "_")


def _add(f: Callable, p: Param) -> Callable:
    params = f.__dict__.setdefault("_kms_params", [])
    params.insert(0, p)  # decorators apply bottom-up; keep the written order
    return f


def option(*decls: str, **kw) -> Callable[[Callable], Callable]:
    return lambda f: _add(f, Param("option", decls, kw))


def argument(name: str, **kw) -> Callable[[Callable], Callable]:
    return lambda f: _add(f, Param("argument", (name,), kw))


def getopt_error(params: list[Param], argv: list[str]) -> str | None:
    """The first complaint glibc's getopt_long() would make about ``argv`` for these options, in its
    words (posix/getopt.c: "invalid option -- 'X'", "option requires an argument -- 'b'",
    "unrecognized option '--x'", "option '--x' requires an argument", "option '--x' doesn't allow
    an argument"), or None. Long options may be abbreviated to a unique prefix, as getopt_long()
    allows; arguments are permuted (options may follow operands); "--" ends the options."""
    takes: dict[str, bool] = {"-h": False, "--help": False}
    for p in params:
        if p.kind == "option":
            for o in p.opts:
                takes[o] = not (p.kw.get("is_flag") or p.kw.get("count"))
    longs = sorted(o for o in takes if o.startswith("--"))
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            return None
        if a.startswith("--"):
            name, eq, _value = a.partition("=")
            hits = [o for o in longs if o == name] or [o for o in longs if o.startswith(name)]
            if len(hits) != 1:
                return f"unrecognized option '{a}'" if not hits else \
                    f"option '{name}' is ambiguous; possibilities: {' '.join(repr(h) for h in hits)}"
            if takes[hits[0]]:
                if not eq:
                    if i >= len(argv):
                        return f"option '{hits[0]}' requires an argument"
                    i += 1
            elif eq:
                return f"option '{hits[0]}' doesn't allow an argument"
        elif a.startswith("-") and a != "-":
            for k, c in enumerate(a[1:], 1):
                if f"-{c}" not in takes:
                    return f"invalid option -- '{c}'"
                if takes[f"-{c}"]:
                    if k == len(a) - 1:  # the argument is the next word
                        if i >= len(argv):
                            return f"option requires an argument -- '{c}'"
                        i += 1
                    break  # the rest of this word is the argument
    return None


class Command:
    # A command that mirrors a C tool's command line (depmod) reports the option errors getopt_long()
    # would, as ``<getopt_prog>: <message>``, and exits ``getopt_status`` (argparse's message and 2
    # otherwise).
    getopt_prog: str | None = None
    getopt_status: int = 2

    def __init__(self, name: str, func: Callable, params: list[Param]) -> None:
        self.name, self.func, self.params = name, func, params
        self.help = textwrap.dedent(func.__doc__ or "").strip()
        if self.help and "\n" in self.help:  # a docstring's first line is flush left
            first, rest = self.help.split("\n", 1)
            self.help = first + "\n" + textwrap.dedent(rest)

    def parser(self, prog: str) -> argparse.ArgumentParser:
        ap = argparse.ArgumentParser(prog=prog, description=self.help,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
        for p in self.params:
            kw = p.kw
            help_ = kw.get("help")
            if kw.get("show_default") and kw.get("default") is not None and help_ is not None:
                help_ = f"{help_} (default: {kw['default']})"
            if kw.get("hidden"):
                help_ = argparse.SUPPRESS
            t = kw.get("type")
            extra: dict = {}
            if isinstance(t, Choice):
                extra["choices"] = t.choices
            elif t is not None:
                extra["type"] = t
            if p.kind == "argument":
                nargs = kw.get("nargs", 1)
                if nargs == -1:
                    extra["nargs"] = "+" if kw.get("required") else "*"
                elif not kw.get("required", True) or "default" in kw:
                    extra["nargs"] = "?"
                    extra["default"] = kw.get("default")
                ap.add_argument(p.name, metavar=p.name.upper(), help=help_, **extra)
                continue
            if kw.get("is_flag"):
                ap.add_argument(*p.opts, dest=p.name, action="store_true", help=help_)
            elif kw.get("count"):
                ap.add_argument(*p.opts, dest=p.name, action="count", default=0, help=help_)
            elif kw.get("multiple"):
                ap.add_argument(*p.opts, dest=p.name, action="append", default=[], help=help_,
                                metavar=kw.get("metavar"), **extra)
            else:
                ap.add_argument(*p.opts, dest=p.name, default=kw.get("default"), help=help_,
                                required=bool(kw.get("required")), metavar=kw.get("metavar"), **extra)
        return ap

    def main(self, argv: list[str], prog: str) -> None:
        if self.getopt_prog is not None:
            msg = getopt_error(self.params, argv)
            if msg is not None:
                sys.stderr.write(f"{self.getopt_prog}: {msg}\n")
                raise SystemExit(self.getopt_status)
        ap = self.parser(prog)
        ns = ap.parse_intermixed_args(argv) if any(
            p.kind == "argument" and p.kw.get("nargs") == -1 for p in self.params) else ap.parse_args(argv)
        values = {}
        try:
            for p in self.params:
                v = getattr(ns, p.name)
                if p.kw.get("multiple") or p.kw.get("nargs") == -1:
                    v = tuple(v or ())
                cb = p.kw.get("callback")
                if cb is not None:
                    v = cb(None, p, v)
                values[p.name] = v
            self.func(**values)
        except UsageError as exc:
            ap.error(str(exc))


class Group:
    """A command made of sub-commands (``kmodsim abi diff ...``): the first argument names the
    sub-command, the rest are its own; ``-h`` lists them. A missing or unknown sub-command is a
    usage error (exit 2)."""

    def __init__(self, name: str, help: str, commands: dict[str, tuple[Command, str]]) -> None:  # noqa: A002
        self.name, self.help, self.commands = name, help, commands

    def usage(self, prog: str) -> str:
        width = max(map(len, self.commands))
        lines = [f"usage: {prog} [-h] COMMAND [ARGS]...", "", self.help, "", "commands:"]
        lines += [f"  {n:<{width}}  {h}" for n, (_c, h) in self.commands.items()]
        lines += ["", f"'{prog} COMMAND -h' for a command."]
        return "\n".join(lines) + "\n"

    def main(self, argv: list[str], prog: str) -> None:
        if not argv or argv[0] in ("-h", "--help"):
            (sys.stdout if argv else sys.stderr).write(self.usage(prog))
            raise SystemExit(0 if argv else 2)
        sub = self.commands.get(argv[0])
        if sub is None:
            sys.stderr.write(f"usage: {prog} [-h] COMMAND [ARGS]...\n{prog}: error: no such command "
                             f"{argv[0]!r} (commands: {', '.join(self.commands)})\n")
            raise SystemExit(2)
        sub[0].main(argv[1:], prog=f"{prog} {argv[0]}")


def command(name: str) -> Callable[[Callable], Command]:
    return lambda f: Command(name, f, f.__dict__.get("_kms_params", []))


def echo(message: str = "", nl: bool = True, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(message + ("\n" if nl else ""))
