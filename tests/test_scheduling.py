"""The test setup itself: every notebook's cells run in order, in one kernel, on one worker.

nbval makes each cell a test, and a cell uses what earlier cells defined, so a notebook split
across the two pytest-xdist workers fails with NameErrors. conftest.py's scheduler keeps a
notebook on one worker; these tests run pytest as the suite does (the addopts of
pyproject.toml) on small notebooks whose later cells need the first cell's state.
"""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat

from conftest import work_unit

ROOT = Path(__file__).resolve().parent.parent


def test_a_notebook_is_one_unit_of_work_and_other_tests_are_single():
    assert work_unit("notebooks/01_toy_world.ipynb::Cell 3") == "notebooks/01_toy_world.ipynb"
    assert work_unit("notebooks/01_toy_world.ipynb::Cell 9") == "notebooks/01_toy_world.ipynb"
    assert work_unit("tests/test_data.py::test_a[1]") == "tests/test_data.py::test_a[1]"
    assert work_unit("tests/test_book.py::test_math_is_typeset[book/intro]") == "tests/test_book.py"


def write_notebook(path: Path, cells: int) -> None:
    """Cell 0 defines `state`; every later cell asserts it, so a cell on another kernel fails."""
    sources = [f"state = {path.stem!r}"] + [f"assert state == {path.stem!r}"] * (cells - 1)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, path)


def test_the_suites_own_options_keep_each_notebook_on_one_worker(tmp_path):
    for name in ("first", "second"):
        write_notebook(tmp_path / f"{name}.ipynb", cells=6)
    (tmp_path / "test_single.py").write_text(
        "import pytest\n\n@pytest.mark.parametrize('i', range(6))\ndef test_single(i):\n    pass\n")
    (tmp_path / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    addopts = addopts.replace("tests/nbval_sanitize.cfg", str(ROOT / "tests/nbval_sanitize.cfg"))
    run = subprocess.run([sys.executable, "-m", "pytest", "-v",
                          "-o", f"addopts={addopts}", "--rootdir", str(tmp_path), str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "18 passed" in run.stdout
    workers_of = {}     # notebook -> the workers its cells ran on
    for worker, notebook in re.findall(r"^\[(gw\d)\].*PASSED \S*?(first|second)\W+ipynb::Cell",
                                       run.stdout, flags=re.MULTILINE):
        workers_of.setdefault(notebook, set()).add(worker)
    assert workers_of.keys() == {"first", "second"}, run.stdout[-3000:]
    assert all(len(workers) == 1 for workers in workers_of.values()), workers_of
