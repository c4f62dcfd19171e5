"""Shared test settings: quiet progress bars, headless matplotlib, two workers of one thread.

At the repository root, so they hold whatever paths pytest is given (a single notebook too).

pytest runs two workers (`-n 2 --dist loadgroup` in pyproject.toml). The cells of a notebook
must run in order in one kernel, so each notebook is one xdist group; every other test is
scheduled on its own. xdist hands out the groups with the most items first (the notebooks),
and the single tests fill in behind them, which keeps both workers busy to the end.

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


@pytest.hookimpl(tryfirst=True)     # before xdist reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.xdist_group(item.path.name))
