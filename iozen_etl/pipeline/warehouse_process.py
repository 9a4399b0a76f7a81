"""The child process that does a run's warehouse work: the load, then the checks.

The load and the checks run outside the run's process because DuckDB's buffers, once
allocated, would stay with it (a sync's memory comes on top). One child serves both, started
with ``spawn`` (the run's threads make ``fork`` unsafe) on first use and kept until the process
ends, so the checks do not pay a second start-up and import of DuckDB. The child ends with
the process that started it: killed with it (``kill -9`` on ``iozen-etl sync``), it would
otherwise wait for work forever, orphaned.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def _exit_with_parent() -> None:
    """In the child, first: exit as soon as the parent is gone.

    A pool's worker never notices on its own: it holds both ends of its work queue, so it
    waits for work forever. A load it is running when the parent dies is abandoned as a
    killed load is, which the load survives (its transaction is not committed).
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the parent's end of the spawn pipe closes: it died
        os._exit(1)

    threading.Thread(target=watch, name="iozen-exit-with-parent", daemon=True).start()


def _child() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                max_workers=1, mp_context=get_context("spawn"), initializer=_exit_with_parent
            )
            atexit.register(_pool.shutdown)
        return _pool


def run_in_child(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``function(*args, **kwargs)`` in the warehouse child; a child that died (killed, out of
    memory) fails this call and is replaced for the next one."""
    global _pool
    pool = _child()
    try:
        return pool.submit(function, *args, **kwargs).result()
    except BrokenProcessPool:
        with _lock:
            if _pool is pool:
                _pool = None
        raise
