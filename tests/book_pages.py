"""The pages of the book, as _toc.yml lists them: shared by the tests that read every page."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def toc_pages() -> list[str]:
    """The pages of _toc.yml in reading order, as paths without extension: "book/intro", ..."""
    def files(entry: dict) -> list[str]:
        own = [entry["file"]] if "file" in entry else []
        children = [child for key in ("parts", "chapters", "sections") for child in entry.get(key, [])]
        return own + [name for child in children for name in files(child)]

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + files(toc)
