"""Module parameters as the kernel parses them: kernel/params.c:parse_args()/parse_one(),
lib/cmdline.c:next_arg(), the standard param ops (param_set_int, ..._bool, ..._charp) and
lib/kstrtox.c's kstrto*() they call."""

from __future__ import annotations

import errno as E

# parmtype -> (signed?, bits) for STANDARD_PARAM_DEF types (kernel/params.c)
INT_TYPES = {
    "byte": (False, 8), "short": (True, 16), "ushort": (False, 16), "int": (True, 32),
    "uint": (False, 32), "long": (True, 64), "ulong": (False, 64), "ullong": (False, 64),
}
NOARG_TYPES = ("bool", "bool_enable_only")  # KERNEL_PARAM_OPS_FL_NOARG (not invbool: checked on 6.1)


def _kstrtoull(s: str, base: int) -> tuple[int, int]:
    """lib/kstrtox.c:_kstrtoull(): (errno or 0, value). Leading '+' handled by the caller."""
    if base == 0:
        if s[:1] == "0":
            base = 16 if s[1:2] in ("x", "X") and s[2:3] and s[2:3] in "0123456789abcdefABCDEF" else 8
        else:
            base = 10
    if base == 16 and s[:2] in ("0x", "0X"):
        s = s[2:]
    res, n, overflow = 0, 0, False
    for ch in s:
        c = ch.lower()
        if "0" <= c <= "9":
            v = ord(c) - 48
        elif "a" <= c <= "f":
            v = ord(c) - 87
        else:
            break
        if v >= base:
            break
        res = res * base + v
        if res >> 64:
            overflow = True
        n += 1
    if overflow:
        return E.ERANGE, 0
    if n == 0:
        return E.EINVAL, 0
    rest = s[n:]
    if rest[:1] == "\n":
        rest = rest[1:]
    if rest:
        return E.EINVAL, 0
    return 0, res


def kstrto(s: str, signed: bool, bits: int, base: int = 0) -> tuple[int, int]:
    """kstrtoll/kstrtoull followed by the range check of the narrower kstrto<type>()."""
    neg = False
    if signed and s[:1] == "-":
        neg, s = True, s[1:]
    elif s[:1] == "+":
        s = s[1:]
    err, v = _kstrtoull(s, base)
    if err:
        return err, 0
    if signed:
        lim = 1 << (bits - 1)
        if (neg and v > lim) or (not neg and v > lim - 1):
            return E.ERANGE, 0
        return 0, -v if neg else v
    if v >> bits:
        return E.ERANGE, 0
    return 0, v


def kstrtobool(s: str | None, tf: bool = True) -> tuple[int, bool]:
    """lib/kstrtox.c:kstrtobool()."""
    if s is None:
        return E.EINVAL, False
    c = s[:1]
    if c in ("y", "Y", "1") or (tf and c in ("t", "T")):
        return 0, True
    if c in ("n", "N", "0") or (tf and c in ("f", "F")):
        return 0, False
    if c in ("o", "O"):
        if s[1:2] in ("n", "N"):
            return 0, True
        if s[1:2] in ("f", "F"):
            return 0, False
    return E.EINVAL, False


def param_set(ptype: str, val: str | None, name: str, log: list[str], tf: bool = True) -> tuple[int, object]:
    """The ``ops->set`` of a parameter of type ``ptype`` (its ``parmtype=`` in .modinfo).
    Returns (errno, value); types the model does not know are accepted as given."""
    if ptype in INT_TYPES:
        return kstrto(val or "", *INT_TYPES[ptype])
    if ptype in ("bool", "invbool"):  # param_set_bool / param_set_invbool: NULL means "1"
        err, v = kstrtobool(val if val is not None else "1", tf)
        return err, (not v if ptype == "invbool" else v)
    if ptype == "charp":  # param_set_charp
        if len(val or "") > 1024:
            log.append(f"{name}: string parameter too long")
            return E.ENOSPC, None
        return 0, val
    return 0, val


def next_arg(args: str) -> tuple[str, str | None, str]:
    """lib/cmdline.c:next_arg(): (param, val or None, rest with leading spaces chewed)."""
    i, equals, in_quote, quoted = 0, 0, False, False
    if args[:1] == '"':
        args = args[1:]
        in_quote = quoted = True
    n = len(args)
    while i < n:
        ch = args[i]
        if ch in " \t\n\v\f\r" and not in_quote:
            break
        if equals == 0 and ch == "=":
            equals = i
        if ch == '"':
            in_quote = not in_quote
        i += 1
    token = args[:i]
    rest = args[i + 1:] if i < n else ""
    end_quote = i > 0 and args[i - 1] == '"'  # the kernel overwrites it with NUL (at most once)
    if not equals:
        param, val = (token[:-1] if quoted and end_quote else token), None
    else:
        param, val = token[:equals], token[equals + 1:]
        if val.startswith('"'):
            val = val[1:-1] if end_quote else val[1:]
        elif quoted and end_quote:
            val = val[:-1]
    return param, val, rest.lstrip(" \t\n\v\f\r")


def parameq(a: str, b: str) -> bool:
    """kernel/params.c:parameq(): '-' and '_' are the same."""
    return a.replace("-", "_") == b.replace("-", "_")


def parse_args(doing: str, args: str, params: dict[str, str], tf: bool = True) -> tuple[int, list[str], dict]:
    """kernel/params.c:parse_args() with the module loader's unknown_module_param_cb().

    ``params``: name -> parmtype. Returns (errno of the last failure or 0, log lines, values set).
    Every argument is processed even after a failure, as the kernel does.
    """
    log: list[str] = []
    values: dict[str, object] = {}
    err = 0
    args = args.lstrip(" \t\n\v\f\r")
    while args:
        param, val, args = next_arg(args)
        if val is None and param == "--":
            if args:
                log.append(f"{doing}: parameters '{args}' after `--' ignored")
            break
        ret = _parse_one(doing, param, val, params, log, values, tf)
        if ret == 0:
            continue
        if ret == E.ENOENT:
            log.append(f"{doing}: Unknown parameter `{param}'")
        elif ret == E.ENOSPC:
            log.append(f"{doing}: `{val or ''}' too large for parameter `{param}'")
        else:
            log.append(f"{doing}: `{val or ''}' invalid for parameter `{param}'")
        err = ret
    return err, log, values


def _parse_one(doing, param, val, params, log, values, tf) -> int:
    """kernel/params.c:parse_one()."""
    for name, ptype in params.items():
        if parameq(param, name):
            if val is None and ptype not in NOARG_TYPES:
                return E.EINVAL
            err, v = param_set(ptype, val, name, log, tf)
            if not err:
                values[name] = v
            return err
    return unknown_module_param_cb(param, val, doing, log)


def unknown_module_param_cb(param: str, val: str | None, modname: str, log: list[str]) -> int:
    """kernel/module/main.c:unknown_module_param_cb(): async_probe and dyndbg are the loader's
    own; anything else is warned about and ignored (the load goes on)."""
    if param == "async_probe":
        return 0
    if param.split(".", 1)[-1] == "dyndbg":  # ddebug_dyndbg_module_param_cb
        return 0
    log.append(f"{modname}: unknown parameter '{param}' ignored")
    return 0
