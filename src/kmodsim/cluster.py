"""One task per kernel, here or on a cluster: :func:`map_tasks`.

Work over many kernels (``abi history``: fetch, decompress and read each one, and its BTF) is a
list of independent tasks, one per kernel, whose results come back in input order. By default
they run one after the other in this process, each reading its modules with every core
(:func:`kmodsim.parallel.parallel_map`). Past one machine they run on an existing engine,
`dask.distributed <https://distributed.dask.org>`_ (``pip install 'kmodsim[cluster]'``):

* ``tcp://HOST:PORT`` (``tls://`` too): the scheduler of a running cluster (``dask scheduler`` on
  one host, ``dask worker tcp://HOST:8786`` on each of the others);
* ``local:N``: a ``LocalCluster`` of N worker processes on this machine, started for the run and
  stopped after it.

The distributed scheduler reruns the task of a worker that dies (up to its ``allowed-failures``,
3 by default) and only a finished task's result is ever gathered, so a result is never half made;
a task that keeps killing its workers is an error that names its item. Results are the same
objects whichever runs them: tasks are pure functions of their item, and the caller merges them
in input order. ``distributed`` is imported only when a scheduler is named (it costs a quarter of
a second): the default path never imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from .errors import Error

# (logging, socket, urllib and distributed are imported when a scheduler is named: the default
# path of every command pays for none of them)

__all__ = ["CONNECT_TIMEOUT", "SchedulerError", "map_pairs", "map_tasks", "parse_scheduler"]

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K")
P = TypeVar("P")
X = TypeVar("X")

# seconds to reach a scheduler (TCP connect, then distributed's handshake): an address nobody
# answers is an error, not a wait
CONNECT_TIMEOUT = 10.0


class SchedulerError(Error):
    """The scheduler cannot be named or reached, or a task failed on every worker it was given."""


def parse_scheduler(spec: str) -> tuple[str, str, int]:
    """``("local", "", N)`` for ``local:N``; ``(scheme, host, port)`` for a scheduler address
    ``tcp://HOST:PORT`` or ``tls://HOST:PORT``. Raises :class:`SchedulerError` (naming ``spec``)
    for anything else."""
    if spec.startswith("local:"):
        n = spec.partition(":")[2]
        if not n.isdigit() or not 1 <= int(n) <= 1024:
            raise SchedulerError(f"--scheduler {spec}: expected local:N, N the number of worker processes (1-1024)")
        return "local", "", int(n)
    from urllib.parse import urlsplit

    bad = SchedulerError(f"--scheduler {spec}: expected tcp://HOST:PORT (a dask scheduler) or local:N")
    url = urlsplit(spec)
    try:
        port = url.port
    except ValueError:
        raise bad from None
    if url.scheme not in ("tcp", "tls") or not url.hostname or port is None or url.path not in ("", "/"):
        raise bad
    return url.scheme, url.hostname, port


def _reachable(spec: str, host: str, port: int) -> None:
    """A plain TCP connect first: a refused or unroutable address fails now, in one line, instead
    of distributed's retries until its timeout."""
    import socket

    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise SchedulerError(f"--scheduler {spec}: cannot connect: {exc.strerror or exc}") from None


@contextmanager
def _client(scheduler: str) -> Iterator[Any]:
    """A dask.distributed ``Client`` of ``scheduler`` (see the module docstring), closed (and a
    ``local:N`` cluster stopped) on the way out."""
    kind, host, port = parse_scheduler(scheduler)
    if kind != "local":
        _reachable(scheduler, host, port)
    import logging

    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SchedulerError(f"--scheduler {scheduler}: needs dask.distributed "
                             f"(pip install 'kmodsim[cluster]')") from None
    cluster: Any = None
    try:
        if kind == "local":
            # processes, one thread each: the tasks are CPU-bound Python; the workers' own logs
            # (a task's error with its traceback, a restart) are not the run's output: errors
            # come back here and are reported once
            # no dashboard, and the scheduler's own HTTP server (health, metrics) on a free port:
            # its default, 8787, is taken by any other run at the same time, and distributed then
            # warns on stderr (a run's stderr would depend on what else runs)
            cluster = LocalCluster(n_workers=port, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.CRITICAL,
                                   scheduler_kwargs={"dashboard_address": ":0"})
            client = Client(cluster)
        else:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, ValueError) as exc:
        if cluster is not None:
            cluster.close()
        raise SchedulerError(f"--scheduler {scheduler}: {exc}") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _gather(tasks: Sequence[tuple[X, Any]], progress: Callable[[int, int, X], None] | None,
            name: Callable[[X], str], done: int = 0, total: int | None = None) -> list[Any]:
    """The results of ``tasks`` ((what the task is for, its future) each), in their order, each
    taken as it finishes; ``progress(done, total, what)`` after each (counting from ``done``). A
    :class:`kmodsim.Error` a task raises is raised here as it was; a task that killed every worker
    it ran on is a :class:`SchedulerError` naming ``name(what)``."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    total = len(tasks) if total is None else total
    index = {f.key: i for i, (_w, f) in enumerate(tasks)}
    results: list[Any] = [None] * len(tasks)
    for fut in as_completed([f for _w, f in tasks]):
        i = index[fut.key]
        what = tasks[i][0]
        try:
            results[i] = fut.result()
        except KilledWorker:
            raise SchedulerError(f"{name(what)}: its task killed every worker it ran on") from None
        done += 1
        if progress is not None:
            progress(done, total, what)
    return results


def map_tasks(func: Callable[[T], R], items: Sequence[T], scheduler: str | None = None,
              progress: Callable[[int, int, T], None] | None = None,
              label: Callable[[T], str] = str) -> list[R]:
    """``[func(x) for x in items]``: here (``scheduler`` None) or as one task per item on a
    dask.distributed cluster (``scheduler``: see the module docstring; ``func`` and the items
    must pickle). ``progress(i, n, x)`` is called as each item starts here, or as each task
    finishes there. A :class:`kmodsim.Error` a task raises is raised here as it was; a task that
    failed on every worker it was given raises :class:`SchedulerError` naming ``label(item)``."""
    if not scheduler:
        out: list[R] = []
        for i, x in enumerate(items, 1):
            if progress is not None:
                progress(i, len(items), x)
            out.append(func(x))
        return out
    with _client(scheduler) as client:
        # pure=False: every run computes afresh (a cluster may outlive the files it read last time)
        futures = client.map(func, list(items), pure=False)
        return _gather(list(zip(items, futures, strict=True)), progress, label)


def map_pairs(read: Callable[[T], R], pair: Callable[[R, R], P], items: Sequence[T],
              scheduler: str | None = None, keep: Callable[[R], K] | None = None,
              progress: Callable[[int, int, str], None] | None = None,
              label: Callable[[T], str] = str) -> tuple[list[K], list[P]]:
    """Each item read (``read(x)``), then each consecutive pair of what was read combined
    (``pair(r[i-1], r[i])``): ``([keep(r) for each r], [each pair's result])``, in input order.
    ``keep`` (default: the whole of ``r``) is what comes back of a read: the rest stays where it
    was made (on a cluster, a worker's memory: ``pair`` tasks run beside their inputs and only
    their results travel). Here (``scheduler`` None) each item is read in turn and compared with
    the one before, only two reads held at once; there, every read and every pair is a task.
    ``progress(i, n, name)``, n = 2 len(items) - 1: as each read or pair starts here, or finishes
    there (a pair's name: "OLD -> NEW"). Errors as :func:`map_tasks`."""
    keep_ = keep if keep is not None else (lambda r: r)  # type: ignore[return-value]
    total = 2 * len(items) - 1 if items else 0
    names = [label(x) for x in items]
    if not scheduler:
        kept: list[K] = []
        pairs: list[P] = []
        prev: R | None = None
        done = 0
        for i, x in enumerate(items):
            done += 1
            if progress is not None:
                progress(done, total, names[i])
            r = read(x)
            kept.append(keep_(r))  # type: ignore[arg-type]
            if i:
                done += 1
                if progress is not None:
                    progress(done, total, f"{names[i - 1]} -> {names[i]}")
                pairs.append(pair(prev, r))  # type: ignore[arg-type]
            prev = r
        return kept, pairs
    with _client(scheduler) as client:
        reads = client.map(read, list(items), pure=False)
        kept_f = client.map(keep_, reads, pure=False)
        pair_f = [client.submit(pair, reads[i - 1], reads[i], pure=False) for i in range(1, len(reads))]
        del reads  # (the scheduler frees each read once its keep and its pairs are done)
        ident = str
        kept_r = _gather(list(zip(names, kept_f, strict=True)), progress, ident, 0, total)
        pairs_r = _gather([(f"{names[i - 1]} -> {names[i]}", f) for i, f in enumerate(pair_f, 1)],
                          progress, ident, len(kept_f), total)
        return kept_r, pairs_r
