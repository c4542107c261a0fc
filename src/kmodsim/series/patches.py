"""A patch series as users have it, read into :class:`Patch` steps in their order.

Three forms, and they give the same steps (so ``kmodsim series`` gives the same report for each):

* ``git format-patch`` output: a directory of ``NNNN-*.patch`` files (taken in file-name order; the
  cover letter, which has no diff, is passed over) or the files themselves, in the order given;
* an mbox holding several patches (what ``git format-patch --stdout`` writes, or what lore serves
  for a thread): messages split at mbox ``From `` separator lines (asctime form, as
  ``git format-patch`` and lore write them), mboxrd's ``>From `` unescaped, messages without a
  diff (a cover letter, a reply) passed over; when every patch's subject says ``[PATCH n/m]``
  they are taken in ``n`` order (a thread's mbox is in arrival order);
* a quilt directory: its ``series`` file (or that file given itself) lists the patches in order,
  one a line, ``#`` comments, with quilt's ``-pN`` option.

A step's name is its subject without the ``[PATCH ...]`` tags (the file's name when the patch has
no mail header), so a report does not depend on the form or on where the files are.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import NamedTuple

from ..errors import PathError


class PatchError(PathError):
    """A patch input that cannot be read as a series; the message names the file."""


class Patch(NamedTuple):
    """One step of a series given as patches."""

    name: str  # the subject without its [PATCH] tags, else the file's name
    text: str  # the patch as given (mail header and message included: git apply skips them)
    strip: int = 1  # quilt's -pN (git apply -p)
    origin: str = ""  # the file it was read from (for messages; not part of a report)


# mbox separator lines as git format-patch ("From <sha> Mon Sep 17 00:00:00 2001") and lore
# ("From mboxrd@z Thu Jan  1 00:00:00 1970") write them: "From " + sender + an asctime date
_FROM = re.compile(r"^From \S+ +(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                   r"+\d+ \d\d:\d\d:\d\d \d{4}$", re.M)
_DIFF = re.compile(r"^(?:diff --git |--- \S.*\n\+\+\+ \S)", re.M)
_HEADER_LINE = re.compile(r"^(?:[!-9;-~]+:.*|[ \t].*)$")  # RFC 5322 field, or a folded continuation
_TAGS = re.compile(r"^\s*(?:\[[^\]]*\]\s*)+")
_NUMBERED = re.compile(r"\[[^\]]*?\b(\d+)/(\d+)\s*\]")
_ESCAPED_FROM = re.compile(r"^>(>*From )", re.M)


def read_series(paths: Sequence[str]) -> list[Patch]:
    """The patches of ``paths`` (files or directories, each in one of the forms above), in order.
    Raises :class:`PatchError` naming the file for an input that is missing, unreadable or holds
    no patch."""
    out: list[Patch] = []
    for p in paths:
        if os.path.isdir(p):
            if os.path.isfile(os.path.join(p, "series")):
                out += _quilt(os.path.join(p, "series"))
            else:
                out += _patch_dir(p)
        elif os.path.basename(p) == "series" and os.path.isfile(p) and not _FROM.match(_read(p)[:200]):
            out += _quilt(p)
        else:
            patches = _mbox(p, _read(p))
            if not patches:
                raise PatchError(p, "holds no patch (no diff in it)")
            out += patches
    return out


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            return f.read()
    except FileNotFoundError:
        raise PatchError(path, "no such file or directory") from None
    except IsADirectoryError:
        raise PatchError(path, "is a directory") from None
    except OSError as exc:
        raise PatchError(path, exc.strerror or str(exc)) from None


def _patch_dir(d: str) -> list[Patch]:
    """A ``git format-patch -o DIR`` directory: its ``*.patch`` / ``*.diff`` files in name order."""
    try:
        names = sorted(n for n in os.listdir(d) if n.endswith((".patch", ".diff")))
    except OSError as exc:
        raise PatchError(d, exc.strerror or str(exc)) from None
    out: list[Patch] = []
    for n in names:
        out += _mbox(os.path.join(d, n), _read(os.path.join(d, n)))
    if not out:
        raise PatchError(d, "holds no patch (no *.patch or *.diff file with a diff, and no quilt series file)")
    return out


def _quilt(series: str) -> list[Patch]:
    """quilt's ``series`` file: a patch a line (relative to the file's directory), ``-pN``
    options, ``#`` comments. ``-R`` (reversed patches) is refused."""
    base = os.path.dirname(series)
    out: list[Patch] = []
    for lineno, line in enumerate(_read(series).splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        strip = 1
        for opt in words[1:]:
            m = re.fullmatch(r"-p(\d+)", opt)
            if m is None:
                raise PatchError(series, f"line {lineno}: option {opt!r} is not supported (only -pN)")
            strip = int(m.group(1))
        path = os.path.join(base, words[0])
        patches = _mbox(path, _read(path))
        if len(patches) != 1:
            raise PatchError(path, f"listed in {series} line {lineno}: "
                             + ("holds no patch (no diff in it)" if not patches else f"holds {len(patches)} patches, not one"))
        out.append(patches[0]._replace(strip=strip))
    if not out:
        raise PatchError(series, "lists no patch")
    return out


def read_mbox(origin: str, text: str) -> list[Patch]:
    """The patches of an mbox given as text (``git format-patch --stdout`` of a range); ``origin``
    names it in messages."""
    return _mbox(origin, text)


def _mbox(path: str, text: str) -> list[Patch]:
    """The patches of one file: one patch, or an mbox of several (messages without a diff passed over)."""
    starts = [m.start() for m in _FROM.finditer(text)]
    if not starts or starts[0] != 0 and text[:starts[0]].strip():
        starts = [0, *starts]
    pieces = [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    # the blank line before a "From " separator is the mbox's, not the message's
    pieces = [p[:-1] if i < len(pieces) - 1 and p.endswith("\n\n") else p for i, p in enumerate(pieces)]
    several = len(pieces) > 1
    out: list[Patch] = []
    numbers: list[int | None] = []
    for piece in pieces:
        if several:
            piece = _ESCAPED_FROM.sub(r"\1", piece)
        if not _DIFF.search(piece):
            continue
        subject = _subject(piece)
        if subject.lower().startswith("re:"):
            continue  # a reply quoting or suggesting a diff is not a step of the series
        m = _NUMBERED.search(subject)
        numbers.append(int(m.group(1)) if m else None)
        name = _TAGS.sub("", subject).strip() or os.path.basename(path)
        out.append(Patch(name, piece, 1, path))
    if len(out) > 1 and all(n is not None for n in numbers):
        order = sorted(range(len(out)), key=lambda i: numbers[i] or 0)
        out = [out[i] for i in order]
    return out


def _subject(message: str) -> str:
    """The ``Subject:`` of a mail header (folded lines joined, RFC 2047 words decoded); "" when the
    text does not start with a mail header."""
    lines = message.split("\n")
    if lines and _FROM.match(lines[0]):
        lines = lines[1:]
    header: list[str] = []
    for line in lines:
        line = line.rstrip("\r")
        if not line:
            break
        if not _HEADER_LINE.match(line) or line.startswith(("diff --git ", "--- ", "+++ ")):
            return ""
        header.append(line)
    subject: str | None = None
    for line in header:
        if subject is not None and line[:1] in (" ", "\t"):
            subject += " " + line.strip()
        elif line.lower().startswith("subject:"):
            subject = line.split(":", 1)[1].strip()
        elif subject is not None:
            break
    if not subject:
        return ""
    from email.header import decode_header, make_header

    try:
        return str(make_header(decode_header(subject)))
    except (LookupError, ValueError):  # an unknown charset: the raw words
        return subject
