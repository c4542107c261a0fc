"""One task per kernel, here or on a cluster: :func:`map_tasks`.

Work over many kernels (``abi history``: fetch, decompress and read each one) is a list of
independent tasks, one per kernel, whose results come back in input order. By default they run
one after the other in this process, each reading its modules with every core
(:func:`kmodsim.parallel.parallel_map`). Past one machine they run on an existing engine,
`dask.distributed <https://distributed.dask.org>`_:

* ``tcp://HOST:PORT`` (any address ``distributed.Client`` takes): the scheduler of a running
  cluster (``dask scheduler`` on one host, ``dask worker tcp://HOST:8786`` on each of the others);
* ``local`` or ``local:N``: a ``LocalCluster`` of N worker processes (default: one per core) on
  this machine, started for the run and stopped after it.

The distributed scheduler reruns the task of a worker that dies (up to its ``allowed-failures``,
3 by default) and only a finished task's result is ever gathered, so a result is never half made;
a task that keeps killing its workers is an error that names its item. Results are the same
objects whichever runs them: tasks are pure functions of their item, and the caller merges them
in input order. ``distributed`` is imported only when a scheduler is named (it costs a quarter of a
second).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .errors import Error

__all__ = ["SchedulerError", "map_tasks", "parse_scheduler"]

T = TypeVar("T")
R = TypeVar("R")


class SchedulerError(Error):
    """The scheduler cannot be reached or named, or a task failed on every worker it was given."""


def parse_scheduler(spec: str) -> tuple[str, int | None]:
    """``("local", N or None)`` for ``local``/``local:N``, else ``("address", None)`` for a
    scheduler address (``tcp://HOST:PORT``, ``tls://...``, ``HOST:PORT``)."""
    if spec == "local" or spec.startswith("local:"):
        n = spec.partition(":")[2]
        if not n:
            return "local", None
        if not n.isdigit() or int(n) < 1:
            raise SchedulerError(f"--scheduler {spec}: expected local:N with N a number of workers >= 1")
        return "local", int(n)
    if "://" not in spec and ":" not in spec:
        raise SchedulerError(f"--scheduler {spec}: expected tcp://HOST:PORT or local[:N]")
    return "address", None


def map_tasks(func: Callable[[T], R], items: Sequence[T], scheduler: str | None = None,
              progress: Callable[[int, int, T], None] | None = None,
              label: Callable[[T], str] = str) -> list[R]:
    """``[func(x) for x in items]``: here (``scheduler`` None) or as one task per item on a
    dask.distributed cluster (``scheduler``: see the module docstring). ``progress(done, n, x)``
    is called as each item starts here, or as each task finishes there. A :class:`kmodsim.Error`
    a task raises is raised here as it was; a task that failed on every worker it was given raises
    :class:`SchedulerError` naming ``label(item)``."""
    if not scheduler:
        out: list[R] = []
        for i, x in enumerate(items, 1):
            if progress is not None:
                progress(i, len(items), x)
            out.append(func(x))
        return out
    kind, workers = parse_scheduler(scheduler)
    try:
        from distributed import Client, LocalCluster, as_completed
        from distributed.scheduler import KilledWorker
    except ImportError:
        raise SchedulerError("--scheduler needs dask.distributed: pip install 'kmodsim[cluster]'") from None
    cluster = None
    try:
        if kind == "local":
            # processes, one thread each: the tasks are CPU-bound Python (and fork for their trees)
            cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                   processes=True, dashboard_address=None)
            client = Client(cluster)
        else:
            client = Client(scheduler, timeout="30s")
    except OSError as exc:
        if cluster is not None:
            cluster.close()
        raise SchedulerError(f"--scheduler {scheduler}: {exc}") from None
    try:
        # pure=False: every run computes afresh (a cluster may outlive the files it read last time)
        futures = client.map(func, list(items), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        done = 0
        for fut in as_completed(futures):
            i = index[fut.key]
            try:
                results[i] = fut.result()
            except KilledWorker:
                raise SchedulerError(f"{label(items[i])}: its task killed every worker it ran on") from None
            done += 1
            if progress is not None:
                progress(done, len(items), items[i])
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
