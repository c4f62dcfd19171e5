"""Shared test settings: quiet progress bars, headless matplotlib, two workers of one thread.

At the repository root, so they hold whatever paths pytest is given (a single notebook too).

pytest runs two workers (`-n 2 --dist loadscope` in pyproject.toml). The cells of a notebook
must run in order in one kernel, so the scheduler below makes each notebook one unit of work;
so too each module of ONE_WORKER_MODULES, whose tests share a costly module-scoped fixture
that every worker running any of them would make again; every other test is a unit of its own.
xdist hands out the units with the most items first (the notebooks), and the single tests fill
in behind them, which keeps both workers busy to the end. The scheduler reads only the test
ids, so it holds whatever pytest and xdist the lock allows (xdist's own `loadgroup` rewrites an
item's private `_nodeid`, which pytest 9.2 no longer reads, and split notebooks across
workers). tests/test_scheduling.py checks it.

On two cores, two one-thread processes get more done than one process with two threads
(small convolutions scale poorly across threads), so every worker, and every kernel and
subprocess it starts, uses one thread unless told otherwise. Results do not depend on the
thread count (checked: the same clip bit for bit).
"""
import os

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")


ONE_WORKER_MODULES = {"tests/test_book.py"}     # builds the book and opens a browser, once


def work_unit(nodeid: str) -> str:
    """The unit of scheduling of a test id: its notebook for a notebook cell, its module for a
    test of ONE_WORKER_MODULES, else the test itself."""
    path = nodeid.split("::", 1)[0]
    return path if path.endswith(".ipynb") or path in ONE_WORKER_MODULES else nodeid


@pytest.hookimpl(optionalhook=True)     # a hook of pytest-xdist; absent without it
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class NotebookPerWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return NotebookPerWorker(config, log)
