"""Independent queries of one page, run side by side: the page waits for the slowest of them, not for their sum.

A clickhouse-connect client without a session (the dashboards' and the queries' own) may be shared by threads.
An error of any query is raised where its result is read, as if it had run there.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import ParamSpec, TypeVar

PARALLEL_QUERIES = 6  # a page's queries in flight at once (the warehouse runs each on one of its threads)

P = ParamSpec("P")
T = TypeVar("T")


class Fetch:
    """``with Fetch() as fetch: totals = fetch(queries.totals, client, where)`` starts the call at once and
    gives its :class:`~concurrent.futures.Future`; leaving the block waits for every call (or, when the block
    raised, cancels those not started and leaves without waiting for those running)."""

    def __init__(self, workers: int = PARALLEL_QUERIES) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="queries")

    def __call__(self, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return self._pool.submit(call, *args, **kwargs)

    def first(self, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Runs ``call`` alone and returns its (done) future: for the query behind the top of a page, started
        before the page's other queries, which on two cores would share the CPU with it and hold the page's first
        figures back by as much as they take."""
        future = self(call, *args, **kwargs)
        wait([future])
        return future

    def __enter__(self) -> Fetch:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        # On an error (a page's run stopped by a click elsewhere, too) the calls not started are cancelled and
        # those running are left to finish unread: the next run does not wait for them.
        self._pool.shutdown(wait=error is None, cancel_futures=error is not None)
