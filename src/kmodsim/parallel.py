"""Running one function over many items in worker processes (:func:`parallel_map`), and the
progress bar long runs show on a terminal (:class:`Progress`). Used by the scan, depmod's reading
and anything else that reads a tree."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any, TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(func: Callable[[T], R], items: Sequence[T], jobs: int | None = None,
                 progress: Progress | None = None, meanwhile: Callable[[], object] | None = None) -> list[R]:
    """``[func(x) for x in items]`` in ``jobs`` processes (default: all cores); results must be
    marshal-able (tuples of builtins). ``meanwhile()``: other work of the caller, done by the
    parent once the children are at work (before it takes its own chunks: the children take
    more of them), or first when there are none; what it raises is raised once the map is done.

    The items are cut into chunks of a few dozen, whose numbers wait in a pipe: every process —
    the parent and ``jobs - 1`` forked children — takes the next number from the pipe when it is
    free (a 2-byte read: atomic), so the work balances itself even when one core is slowed down
    (as on a shared virtual machine) and callers only order the items largest first. No process
    sits idle collecting results while the cores are busy: a child appends each chunk's results,
    marshalled, to its own anonymous file (read by the parent once the child has exited), and a
    byte per chunk on a shared progress pipe. A child that fails only costs time: its chunks are
    then done by the parent. Children are forked before the progress display starts its thread
    (fork and threads do not mix). ``func`` is called in forked children: any callable will do (a
    closure or a lambda too), nothing is pickled."""
    import marshal
    import select

    with without_gc():
        return _parallel_map(func, items, jobs, progress, marshal, select, meanwhile)


@contextmanager
def without_gc() -> Iterator[None]:
    """The cyclic garbage collector off for the block (and on again after, if it was on): work over
    a tree makes ~10^6 short-lived acyclic objects, which the collector would only walk (measured
    on check's checks of Debian's 6.1 tree: ~0.03 CPU-s of 0.19)."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _run_chunks(func: Callable[[T], R], items: Sequence[T], size: int, queue: int,
                prog: Callable[[int], object] | None,
                emit: Callable[[tuple[int, list[R]]], object] | None = None) -> list[tuple[int, list[R]]]:
    """Take chunk numbers from the ``queue`` pipe until it is empty; [(number, results)], or each
    ``(number, results)`` given to ``emit`` as it is done (and [])."""
    done: list[tuple[int, list[R]]] = []
    while True:
        b = os.read(queue, 2)
        if len(b) < 2:
            return done
        n = int.from_bytes(b, "little")
        chunk = items[n * size:(n + 1) * size]
        if emit is None:
            done.append((n, [func(x) for x in chunk]))
        else:
            emit((n, [func(x) for x in chunk]))
        if prog is not None:
            prog(len(chunk))


def _scratch_file() -> int | None:
    """A descriptor of an anonymous file (memfd on Linux, else an unlinked temporary file), or
    None when neither can be made (then no child is forked: the parent does every chunk)."""
    try:
        return os.memfd_create("kmodsim-results", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        pass
    import tempfile

    try:
        fd, name = tempfile.mkstemp(prefix="kmodsim-results-")
    except OSError:
        return None
    os.unlink(name)
    return fd


def _writer(fd: int, marshal: ModuleType) -> Callable[[object], None]:
    """Appends ``obj`` marshalled, after its 8-byte length, to the file ``fd``."""

    def emit(obj: object) -> None:
        data = marshal.dumps(obj)
        view = memoryview(len(data).to_bytes(8, "little") + data)
        while view:
            view = view[os.write(fd, view):]

    return emit


def _read_records(fd: int, marshal: ModuleType) -> list[Any]:
    """The objects :func:`_writer` appended to ``fd`` (ValueError if the file is cut short)."""
    size = os.fstat(fd).st_size
    data = memoryview(os.pread(fd, size, 0)) if size else memoryview(b"")
    if len(data) != size:
        raise ValueError("results file read short")
    out = []
    at = 0
    while at < size:
        if at + 8 > size:
            raise ValueError("truncated results file")
        n = int.from_bytes(data[at:at + 8], "little")
        at += 8
        if at + n > size:
            raise ValueError("truncated results file")
        out.append(marshal.loads(data[at:at + n]))
        at += n
    return out


def _parallel_map(func: Callable[[T], R], items: Sequence[T], jobs: int | None, progress: Progress | None,
                  marshal: ModuleType, select: ModuleType, meanwhile: Callable[[], object] | None) -> list[R]:
    jobs = min(jobs or os.cpu_count() or 1, max(1, len(items) // 32))
    if jobs <= 1 or not hasattr(os, "fork"):
        if meanwhile is not None:
            meanwhile()
        with progress or Progress(False, 0) as advance:
            serial: list[R] = []
            for x in items:
                serial.append(func(x))
                if advance:
                    advance(1)
            return serial
    # chunks of 16 to 255 items (a progress byte counts one), at most 16384 of them (their numbers,
    # 2 bytes each, fit a pipe's 64 KiB buffer: written whole before any process starts)
    size = min(255, max(16, -(-len(items) // 16384)))
    count = -(-len(items) // size)
    q_r, q_w = os.pipe()
    os.write(q_w, b"".join(n.to_bytes(2, "little") for n in range(count)))
    os.close(q_w)
    prog_r, prog_w = os.pipe()
    children: dict[int, int] = {}  # status pipe -> pid
    results: dict[int, int] = {}  # status pipe -> results file
    for _ in range(1, jobs):
        res_fd = _scratch_file()
        if res_fd is None:
            break
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: work, send, leave without running the parent's exit handlers
            status = 1
            try:
                os.close(r)
                os.close(prog_r)
                for other in children:
                    os.close(other)
                for other in results.values():
                    os.close(other)
                # each chunk's results into the results file as it is done: marshalled while the
                # other processes still work, never blocked on a full pipe; the parent reads them
                # once this process has exited (its status pipe closed) with status 0
                _run_chunks(func, items, size, q_r, lambda k: os.write(prog_w, bytes((k,))),
                            _writer(res_fd, marshal))
                status = 0
            except BaseException:  # noqa: BLE001 - reported by the parent redoing the chunks
                pass
            finally:
                os._exit(status)
        os.close(w)
        children[r] = pid
        results[r] = res_fd
    os.close(prog_w)
    os.set_blocking(prog_r, False)
    failed: Exception | None = None
    if meanwhile is not None:
        try:
            meanwhile()
        except Exception as exc:  # noqa: BLE001 - raised once the children are collected (Ctrl-C: at once)
            failed = exc
    out = cast("list[R]", [None] * len(items))  # every slot filled below
    got = [False] * count
    with progress or Progress(False, 0) as advance:

        def drain() -> None:
            try:
                data = os.read(prog_r, 4096)
            except BlockingIOError:
                return
            if data and advance:
                advance(sum(data))

        def mine(k: int) -> None:
            if advance:
                advance(k)
                drain()

        chunks = _run_chunks(func, items, size, q_r, mine if advance else None)
        os.close(q_r)
        open_fds = set(children) | {prog_r}
        while open_fds:  # the progress pipe ends when the last child has exited
            ready, _, _ = select.select(list(open_fds), [], [])
            for fd in ready:
                if fd == prog_r:
                    try:
                        data = os.read(prog_r, 4096)
                    except BlockingIOError:
                        continue
                    if not data:
                        open_fds.discard(prog_r)
                        os.close(prog_r)
                    elif advance:
                        advance(sum(data))
                    continue
                if os.read(fd, 4096):  # nothing is written here: only the end counts
                    continue
                open_fds.discard(fd)
                os.close(fd)
                _, status = os.waitpid(children[fd], 0)
                res_fd = results.pop(fd)
                try:
                    if status == 0:
                        chunks += _read_records(res_fd, marshal)
                except (ValueError, EOFError, TypeError):
                    pass  # any chunk not read back is done below
                finally:
                    os.close(res_fd)
        for chunk in chunks:
            if not isinstance(chunk, tuple) or len(chunk) != 2:
                continue
            n, res = chunk
            if (isinstance(n, int) and isinstance(res, list) and 0 <= n < count
                    and len(res) == len(items[n * size:(n + 1) * size])):
                out[n * size:n * size + len(res)] = res
                got[n] = True
        for n in range(count):  # a child that failed: its chunks are done here
            if not got[n]:
                lo = n * size
                out[lo:lo + size] = [func(x) for x in items[lo:lo + size]]
    if failed is not None:
        raise failed
    return out


class Progress:
    """A rich progress bar on a terminal; nothing when piped (or when ``enabled`` is False), nor for
    fewer than ``minimum`` items. ``label`` says what is counted."""

    def __init__(self, enabled: bool | None, total: int, label: str = "reading modules", minimum: int = 200) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.enabled = self.enabled and total >= minimum
        self.total = total
        self.label = label
        self._p: Any = None  # a rich.progress.Progress while shown

    def __enter__(self) -> Callable[[int], None] | None:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        # on stderr, the terminal it checked: stdout may carry the output (scan --json, depmod -n)
        self._p = Bar(TextColumn(self.label), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), transient=True, console=Console(stderr=True))
        self._p.start()
        task = self._p.add_task("scan", total=self.total)
        return lambda n: self._p.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.stop()
