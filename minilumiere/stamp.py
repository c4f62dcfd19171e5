"""The book's address lives in one place, `_config.yml` (`repository: url, branch`); this
module stamps it into every chapter's Colab badge and Colab setup cell, so that moving the
repository is one edit and one command:

    python -m minilumiere.stamp            # rewrite the chapters that disagree
    python -m minilumiere.stamp --check    # name them and exit 1 (what the tests do)
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parent.parent
BADGE_IMAGE = "../book/images/colab-badge.svg"   # local, so the badge shows offline too
BADGE = re.compile(r"^\[!\[Open In Colab\]\(.*\)\]\(.*\)$", re.MULTILINE)
CLONE_TO = "/content/minilumiere"


def book_address(config: Path = REPOSITORY / "_config.yml") -> tuple[str, str]:
    """(url, branch) of the repository, as `_config.yml` gives them."""
    repository = yaml.safe_load(config.read_text())["repository"]
    url = repository["url"].rstrip("/")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise ValueError(f"repository.url in {config} must be https://github.com/OWNER/NAME "
                         f"(Colab opens notebooks from GitHub), got {url!r}")
    return url, repository.get("branch", "main")


def badge(url: str, branch: str, notebook: str) -> str:
    """The markdown badge that opens `notebooks/<notebook>` of the repository in Colab."""
    github_path = url.removeprefix("https://github.com/")
    target = f"https://colab.research.google.com/github/{github_path}/blob/{branch}/notebooks/{notebook}"
    return f"[![Open In Colab]({BADGE_IMAGE})]({target})"


def setup_cell(url: str) -> str:
    """The first code cell: in Colab, clone the repository (code and weights) and install the
    package over Colab's own torch, which `torch>=2.1` in pyproject.toml accepts as it is;
    elsewhere the package is installed already and the cell does nothing."""
    return "\n".join([
        "# Setup: in Colab, fetch the book's code and weights; elsewhere this does nothing.",
        "import sys",
        'if "google.colab" in sys.modules:',
        f"    !git clone -q --depth 1 {url} {CLONE_TO}",
        f"    %pip install -q -e {CLONE_TO}",
        f'    sys.path.insert(0, "{CLONE_TO}")',
    ])


def stamp(notebook: dict, name: str, url: str, branch: str) -> dict:
    """The notebook with its badge (in the first markdown cell) and its setup cell (the first
    code cell) made to point at `url`."""
    title = next(cell for cell in notebook["cells"] if cell["cell_type"] == "markdown")
    setup = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    text = "".join(title["source"])
    if not BADGE.search(text):
        raise ValueError(f"{name}: its first markdown cell has no '[![Open In Colab](...)](...)' line")
    title["source"] = source_lines(BADGE.sub(lambda _: badge(url, branch, name), text))
    setup["source"] = source_lines(setup_cell(url))
    return notebook


def source_lines(text: str) -> list[str]:
    """A cell's source as nbformat stores it: lines, each but the last with its newline."""
    return text.splitlines(keepends=True)


def dumps(notebook: dict) -> str:
    """JSON as Jupyter writes notebooks (one-space indent, UTF-8 kept, final newline)."""
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def chapters() -> list[Path]:
    return sorted((REPOSITORY / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def out_of_step(config: Path = REPOSITORY / "_config.yml") -> dict[Path, str]:
    """{path: stamped text} for each chapter whose badge or setup cell disagrees with `config`."""
    url, branch = book_address(config)
    stale = {}
    for path in chapters():
        text = path.read_text()
        stamped = dumps(stamp(json.loads(text), path.name, url, branch))
        if stamped != text:
            stale[path] = stamped
    return stale


def write_or_check(stale: dict[Path, str], check: bool, in_step: str) -> int:
    """Write each out-of-step file's new text, or with `check` only name them; print
    `in_step` when there are none. The exit code: 1 when checking found any, else 0."""
    for path, text in stale.items():
        print(f"{'out of step' if check else 'wrote'}: {path.parent.name}/{path.name}")
        if not check:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
    if not stale:
        print(in_step)
    return 1 if check and stale else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minilumiere.stamp", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only name the chapters out of step")
    args = parser.parse_args(argv)
    return write_or_check(out_of_step(), args.check,
                          f"all {len(chapters())} chapters point at {book_address()[0]}")


if __name__ == "__main__":
    sys.exit(main())
