"""Every chapter runs top to bottom in a fresh kernel at the `smoke` scale (papermill).

The committed outputs are checked separately by nbval (`--nbval-lax`, run on notebooks/ by
the same pytest command): cells marked `# NBVAL_CHECK_OUTPUT` must reproduce their output.
"""
from pathlib import Path

import nbformat
import papermill
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9]*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_runs_at_smoke_scale(notebook, tmp_path):
    output = tmp_path / notebook.name
    papermill.execute_notebook(str(notebook), str(output), parameters={"scale": "smoke"},
                               kernel_name="python3", cwd=str(notebook.parent),
                               progress_bar=False)
    executed = nbformat.read(output, as_version=4)
    errors = [o for cell in executed.cells for o in cell.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_follows_the_conventions(notebook):
    nb = nbformat.read(notebook, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "scale" in tagged[0].source
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "colab.research.google.com" in text
    assert "## Summary" in text and "{exercise}" in text and "{solution}" in text
    assert any(c.cell_type == "code" and c.outputs for c in nb.cells), "outputs must be committed"
    assert notebook.stat().st_size < 2_000_000, "keep committed outputs small"
