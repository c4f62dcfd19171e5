"""Student versions of the chapters, made from them by this script, never by hand. Each
student/NN_*.ipynb is notebooks/NN_*.ipynb with its outputs cleared, its solutions left out,
and each build-it exercise (a code cell tagged `build-it`, where the chapter builds a piece
of the package inline) cut to the signatures and docstrings of what it defines, bodies to
write, and the line that checks them against the package (`minilumiere.exercises`). The
rest of such a cell (the chapter's own comparison and figure) follows as a cell of its own.

    python -m minilumiere.student            # rewrite the student notebooks that disagree
    python -m minilumiere.student --check    # name them and exit 1 (what the tests do)
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import re
import sys
from pathlib import Path

from . import stamp

STUDENT = stamp.REPOSITORY / "student"
BUILD_IT = "build-it"
TODO = "raise NotImplementedError  # your code here"
# A MyST solution directive, from its opening fence to the closing fence of the same length.
SOLUTION = re.compile(r"^(?P<fence>`{3,}|:{3,})\{solution\}.*?^(?P=fence)[ \t]*(?:\n|\Z)", re.M | re.S)
NOTE = """> **Student version** of the chapter, made by `python -m minilumiere.student`. The
> exercises' solutions are left out (the book has them). Each cell tagged `build-it` is yours
> to write: fill in the bodies that raise `NotImplementedError`, then run the check named in
> its last lines, which compares your code with the package's on random inputs."""


def check_name(name: str) -> str:
    """The check in `minilumiere.exercises` for a build-it object: my_blend -> check_blend."""
    return "check_" + name.removeprefix("my_")


def is_build_it(cell: dict) -> bool:
    return cell["cell_type"] == "code" and BUILD_IT in cell["metadata"].get("tags", [])


def definitions(source: str) -> list[ast.FunctionDef | ast.ClassDef]:
    """The functions and classes a cell defines at its top level."""
    return [node for node in ast.parse(source).body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]


def _first_line(node: ast.AST) -> int:
    return node.decorator_list[0].lineno if node.decorator_list else node.lineno


def _attributes(init: ast.FunctionDef) -> list[str]:
    """The names `self.<name> = ...` assigns in __init__, in order."""
    names = [node.attr for node in ast.walk(init) if isinstance(node, ast.Attribute)
             and isinstance(node.ctx, ast.Store) and isinstance(node.value, ast.Name) and node.value.id == "self"]
    return list(dict.fromkeys(names))


def _stub(node: ast.FunctionDef | ast.ClassDef, lines: list[str]) -> list[str]:
    """A def or class cut to its header, leading comments and docstring; its methods cut the
    same way, each function body replaced by TODO."""
    first_statement = node.body[0]
    has_docstring = (isinstance(first_statement, ast.Expr) and isinstance(first_statement.value, ast.Constant)
                     and isinstance(first_statement.value.value, str))
    end = first_statement.end_lineno if has_docstring else first_statement.lineno - 1
    kept = lines[_first_line(node) - 1:end]
    while kept and not kept[-1].strip():
        kept.pop()
    indent = " " * first_statement.col_offset
    if isinstance(node, ast.FunctionDef):
        if node.name == "__init__":
            kept.append(f"{indent}# the check and the chapter use: "
                        + ", ".join(f"self.{name}" for name in _attributes(node)))
        return kept + [indent + TODO]
    for number, member in enumerate(node.body[has_docstring:]):
        kept += [""] * (number > 0 or has_docstring) + (
            _stub(member, lines) if isinstance(member, ast.FunctionDef)
            else lines[_first_line(member) - 1:member.end_lineno])
    return kept


def skeleton(source: str) -> tuple[str, str]:
    """(exercise, rest) of a build-it cell: the stubs of what it defines and a line naming the
    check of each; and the cell's other statements (empty if none)."""
    lines, defined = source.splitlines(), definitions(source)
    if not defined:
        raise ValueError(f"a build-it cell must define a function or a class; this one does not:\n{source}")
    stubs = "\n\n\n".join("\n".join(_stub(node, lines)) for node in defined)
    checks = "\n".join(f"# check it: from minilumiere import exercises; exercises.{check_name(node.name)}({node.name})"
                       for node in defined)
    taken = {number for node in defined for number in range(_first_line(node), node.end_lineno + 1)}
    blank = {number for number, line in enumerate(lines, 1) if not line.strip()}
    for number in sorted(taken):                         # and the blank lines around each definition
        for step in (-1, 1):
            neighbour = number + step
            while neighbour in blank:
                taken.add(neighbour)
                neighbour += step
    rest = "\n".join(line for number, line in enumerate(lines, 1) if number not in taken)
    return f"{stubs}\n\n\n{checks}", rest


def _without_solutions(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", SOLUTION.sub("", text)).strip("\n") if SOLUTION.search(text) else text


def _cell(cell_type: str, cell_id: str, source: str) -> dict:
    code = {"execution_count": None, "outputs": []} if cell_type == "code" else {}
    return {"cell_type": cell_type, **code, "id": cell_id, "metadata": {}, "source": stamp.source_lines(source)}


def student_version(notebook: dict, name: str, url: str, branch: str) -> dict:
    """The student notebook of chapter `name` (see the module docstring)."""
    notebook = copy.deepcopy(notebook)
    notebook["metadata"].pop("widgets", None)                  # widget state belongs to the outputs
    cells = []
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            cell["source"] = stamp.source_lines(_without_solutions("".join(cell["source"])))
            cells += [cell] if "".join(cell["source"]).strip() else []
            continue
        cell.update(outputs=[], execution_count=None)
        cell["metadata"].pop("execution", None)
        cells.append(cell)
        if is_build_it(cell):
            exercise, rest = skeleton("".join(cell["source"]))
            cell["source"] = stamp.source_lines(exercise)
            cells += [_cell("code", f"{cell['id']}-rest", rest)] if rest else []
    title = next(cell for cell in cells if cell["cell_type"] == "markdown")
    student_badge = stamp.badge(url, branch, name).replace(f"/notebooks/{name}", f"/student/{name}")
    title["source"] = stamp.source_lines(stamp.BADGE.sub(lambda _: student_badge, "".join(title["source"])))
    cells.insert(cells.index(title) + 1, _cell("markdown", "student-version", NOTE))
    notebook["cells"] = cells
    return notebook


def out_of_step() -> dict[Path, str]:
    """{path: text} for each student notebook that is missing or disagrees with its chapter."""
    url, branch = stamp.book_address()
    stale = {}
    for chapter in stamp.chapters():
        path = STUDENT / chapter.name
        text = stamp.dumps(student_version(json.loads(chapter.read_text()), chapter.name, url, branch))
        if not path.exists() or path.read_text() != text:
            stale[path] = text
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minilumiere.student", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only name the student notebooks out of step")
    args = parser.parse_args(argv)
    return stamp.write_or_check(out_of_step(), args.check, f"all {len(stamp.chapters())} student "
                                                           f"notebooks are in step with their chapters")


if __name__ == "__main__":
    sys.exit(main())
