"""Process pools that fail loudly, for the data stages' per-image work.

``multiprocessing.Pool`` replaces a worker that dies, forever: when workers cannot even start (a script
that starts the pool without an ``if __name__ == "__main__":`` guard, under the spawn start method; an
initializer that raises; a module the workers cannot import), the run hangs without a word. These pools
are ``concurrent.futures`` process pools, which break instead: :func:`process_map` then raises
:class:`WorkerPoolError` saying what happened and what to do.

Workers are spawned, not forked: the caller may run threads (progress bars, tracking clients) whose locks
a fork would copy in whatever state they are in.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from pipeline.stage import StageError

T = TypeVar("T")
R = TypeVar("R")


class WorkerPoolError(StageError):
    """The worker processes could not start, or died; the work they had is lost."""


def process_map(
    work: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    *,
    ordered: bool = True,
    chunksize: int = 1,
    initializer: Callable[[], object] | None = None,
    what: str = "the pool",
) -> Iterator[R]:
    """``work(item)`` for every item, in `workers` spawned processes (`work` and the items must pickle).

    Results come in the order of `items` (``ordered``) or as they finish, a worker taking `chunksize`
    items at a time; at most ``4 * workers`` chunks are in flight, so results are consumed as they come.
    An exception raised by `work` propagates as it is; workers that die or cannot start raise
    :class:`WorkerPoolError` naming `what`.
    """
    pool = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=initializer
    )
    try:
        pending: list[Future[list[R]]] = []
        for chunk in _chunks(items, chunksize):
            pending.append(pool.submit(_apply, work, chunk))
            if len(pending) >= 4 * workers:
                yield from _drain(pending, ordered, keep=2 * workers)
        yield from _drain(pending, ordered, keep=0)
    except BrokenProcessPool as exc:
        raise WorkerPoolError(
            f"the {workers} worker processes of {what} died or could not start ({exc}). A script that "
            f'starts them must guard its code with `if __name__ == "__main__":` (workers are spawned and '
            f"import the main module); with workers: 1 the work runs in this process and shows its error."
        ) from None
    finally:  # also when the caller stops early or `work` raised: the rest is not started
        pool.shutdown(wait=True, cancel_futures=True)


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _apply(work: Callable[[T], R], chunk: list[T]) -> list[R]:
    return [work(item) for item in chunk]


def _drain(pending: list[Future[list[R]]], ordered: bool, keep: int) -> Iterator[R]:
    """Results of `pending` until at most `keep` are left: from the front, or as they finish."""
    while len(pending) > keep:
        if ordered:
            yield from pending.pop(0).result()
            continue
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            pending.remove(future)
            yield from future.result()
