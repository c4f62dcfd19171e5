"""The chapters as a Colab user meets them: the badge and the setup cell name the address that
`_config.yml` gives, and each chapter's setup cell, run in a fresh environment that holds only
what Colab provides, installs the package from a clone without replacing torch, after which
the chapter's first cells run from a folder outside the repository (as Colab's /content is)."""
import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from nbclient import NotebookClient
from nbformat import from_dict

from minilumiere import stamp

# What a Colab runtime already has (torch and the scientific stack), at the lock's versions;
# the setup cell must bring the rest (mediapy, imageio-ffmpeg) and keep this torch.
COLAB_PACKAGES = ["torch", "numpy", "matplotlib", "pillow", "tqdm", "einops", "safetensors",
                  "ipykernel", "ipywidgets"]
FIRST_CODE_CELLS = 4   # setup, parameters, imports, and the first cell that uses them
PRETEND_COLAB = 'import sys, types\nsys.modules["google.colab"] = types.ModuleType("google.colab")'


def test_every_chapter_points_at_the_configured_address():
    stale = stamp.out_of_step()
    assert not stale, (f"{[path.name for path in stale]} disagree with _config.yml's repository: "
                       "run `python -m minilumiere.stamp`")


def test_stamp_follows_the_config(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: https://github.com/someone/fork\n  branch: dev\n")
    stale = stamp.out_of_step(config=config)
    assert set(stale) == set(stamp.chapters())
    tour = json.loads(stale[stamp.REPOSITORY / "notebooks" / "00_tour.ipynb"])
    text = json.dumps(tour["cells"][:3])
    assert "colab.research.google.com/github/someone/fork/blob/dev/notebooks/00_tour.ipynb" in text
    assert "git clone -q --depth 1 https://github.com/someone/fork /content/minilumiere" in text
    assert "minilumiere/minilumiere" not in text


def test_a_bad_address_is_named(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: https://gitlab.com/someone/fork\n")
    with pytest.raises(ValueError, match="repository.url .* must be https://github.com/OWNER/NAME"):
        stamp.book_address(config)


@pytest.fixture(scope="module")
def colab_kernel(tmp_path_factory, monkeypatch_module):
    """A Jupyter kernel named "colab" running in a new virtual environment with only
    COLAB_PACKAGES (pip takes them from its cache, torch from the local wheel)."""
    root = tmp_path_factory.mktemp("colab")
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / "bin" / "python"
    lock = stamp.REPOSITORY / "requirements.txt"
    subprocess.run([python, "-m", "pip", "install", "-q", "-c", lock, *COLAB_PACKAGES], check=True)
    spec = root / "jupyter" / "kernels" / "colab" / "kernel.json"
    spec.parent.mkdir(parents=True)
    spec.write_text(json.dumps({"argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                "display_name": "colab", "language": "python"}))
    monkeypatch_module.setenv("JUPYTER_PATH", str(root / "jupyter"))
    return root, python


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def torch_build(python: Path) -> str:
    return subprocess.run([python, "-c", "import torch; print(torch.__version__, torch.__file__)"],
                          check=True, capture_output=True, text=True).stdout.strip()


def colab_cells(chapter: Path, clone_to: Path) -> list[dict]:
    """The chapter's first code cells, as they would run in Colab: the setup cell clones this
    repository by path (its committed HEAD, as GitHub would serve it) into `clone_to` instead of
    /content/minilumiere, and the parameters cell is followed by `scale = "smoke"`."""
    url, _ = stamp.book_address()
    code = [cell for cell in json.loads(chapter.read_text())["cells"] if cell["cell_type"] == "code"]
    setup, parameters, *rest = ["".join(cell["source"]) for cell in code[:FIRST_CODE_CELLS]]
    assert url in setup and stamp.CLONE_TO in setup, f"{chapter.name}: setup cell does not clone {url}"
    setup = setup.replace(url, stamp.REPOSITORY.as_uri()).replace(stamp.CLONE_TO, str(clone_to))
    sources = [PRETEND_COLAB, setup, parameters + '\nscale = "smoke"', *rest,
               "import minilumiere; print(minilumiere.__file__)"]
    return [from_dict({"cell_type": "code", "source": source, "metadata": {}, "outputs": [],
                       "execution_count": None}) for source in sources]


@pytest.mark.timeout(1200)
def test_each_chapter_installs_and_starts_in_colab(colab_kernel):
    root, python = colab_kernel
    torch_before = torch_build(python)
    for chapter in stamp.chapters():
        work = root / chapter.stem                      # the kernel's cwd, as /content is Colab's
        work.mkdir()
        clone_to = work / "minilumiere"
        notebook = from_dict({"cells": colab_cells(chapter, clone_to), "metadata": {},
                              "nbformat": 4, "nbformat_minor": 5})
        client = NotebookClient(notebook, kernel_name="colab", timeout=600,
                                resources={"metadata": {"path": str(work)}})
        client.execute()                                 # raises CellExecutionError, naming the cell
        imported_from = notebook.cells[-1].outputs[0]["text"].strip()
        assert imported_from.startswith(str(clone_to)), f"{chapter.name} imported {imported_from}"
    assert torch_build(python) == torch_before, "a setup cell replaced Colab's torch"
