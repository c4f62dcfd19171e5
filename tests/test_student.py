"""The student notebooks (student/, made by `python -m minilumiere.student`): in step with the
chapters, valid notebooks, without outputs or solutions, and with every build-it cell cut to
stubs that raise NotImplementedError and name a check that exists."""
import json
import re

import nbformat
import pytest

from minilumiere import exercises, stamp, student
from test_exercises import chapter_state

CHAPTERS = stamp.chapters()
CHECK_LINE = re.compile(r"^# check it: (from minilumiere import exercises; exercises\.(check_\w+)\((\w+)\))$", re.M)


def cells(path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def test_the_student_notebooks_are_in_step():
    stale = student.out_of_step()
    assert not stale, (f"{[path.name for path in stale]} disagree with their chapters: "
                       "run `python -m minilumiere.student`")
    assert sorted(path.name for path in student.STUDENT.glob("*.ipynb")) == [c.name for c in CHAPTERS]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_a_student_notebook_is_the_chapter_without_outputs_and_solutions(chapter):
    path = student.STUDENT / chapter.name
    nbformat.validate(nbformat.reads(path.read_text(), as_version=nbformat.NO_CONVERT))
    ours = cells(path)
    markdown = "\n".join("".join(cell["source"]) for cell in ours if cell["cell_type"] == "markdown")
    assert "{solution}" not in markdown and ":class: dropdown" not in markdown
    labels = re.compile(r"^:label: (ch\d-ex\d)$", re.M)
    chapter_markdown = "\n".join("".join(c["source"]) for c in cells(chapter) if c["cell_type"] == "markdown")
    assert labels.findall(markdown) == [label for label in labels.findall(chapter_markdown)
                                        if f"{{solution}} {label}" in chapter_markdown]
    code = [cell for cell in ours if cell["cell_type"] == "code"]
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)
    assert f"blob/main/student/{chapter.name}" in "".join(ours[0]["source"])
    kept = ["".join(cell["source"]) for cell in code if not student.is_build_it(cell)]
    chapter_code = ["".join(c["source"]) for c in cells(chapter)
                    if c["cell_type"] == "code" and not student.is_build_it(c)]
    assert [source for source in kept if source in chapter_code] == chapter_code, "a chapter cell went missing"


BUILD_IT_CELLS = [(chapter, i) for chapter in CHAPTERS
                  for i, cell in enumerate(cells(student.STUDENT / chapter.name)) if student.is_build_it(cell)]


def test_every_build_it_cell_of_the_chapters_is_an_exercise():
    for chapter in CHAPTERS:
        expected = sum(student.is_build_it(cell) for cell in cells(chapter))
        assert sum(c == chapter for c, _ in BUILD_IT_CELLS) == expected, chapter.name
    assert len(BUILD_IT_CELLS) >= 10


@pytest.mark.parametrize("chapter, index", BUILD_IT_CELLS, ids=lambda v: getattr(v, "stem", str(v)))
def test_a_build_it_cell_names_its_checks_and_raises_until_written(chapter, index):
    source = "".join(cells(student.STUDENT / chapter.name)[index]["source"])
    named = CHECK_LINE.findall(source)
    defined = [node.name for node in student.definitions(source)]
    assert [name for _, _, name in named] == defined and defined
    namespace = dict(chapter_state(chapter.name))
    exec(source, namespace)
    for call, check, name in named:
        assert callable(getattr(exercises, check, None)), f"{chapter.name} names {check}, not in exercises"
        with pytest.raises(NotImplementedError):
            exec(call, namespace)


def test_skeleton_keeps_signatures_docstrings_and_the_rest():
    source = '''import torch


class Scaler(torch.nn.Module):
    """Multiply by a learned number."""

    def __init__(self,
                 start):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(start))

    @staticmethod
    def helper(x):                  # x (N,)
        return 2 * x


def my_double(x):
    # x (N,) -> (N,)
    return 2 * x


print(my_double(torch.ones(2)))'''
    exercise, rest = student.skeleton(source)
    assert exercise == '''class Scaler(torch.nn.Module):
    """Multiply by a learned number."""

    def __init__(self,
                 start):
        # the check and the chapter use: self.scale
        raise NotImplementedError  # your code here

    @staticmethod
    def helper(x):                  # x (N,)
        raise NotImplementedError  # your code here


def my_double(x):
    # x (N,) -> (N,)
    raise NotImplementedError  # your code here


# check it: from minilumiere import exercises; exercises.check_Scaler(Scaler)
# check it: from minilumiere import exercises; exercises.check_double(my_double)'''
    assert rest == "import torch\nprint(my_double(torch.ones(2)))"


def test_solutions_go_and_exercises_stay():
    text = ("## Exercises\n\n```{exercise}\n:label: ch9-ex1\nDo it.\n```\n\n"
            "````{solution} ch9-ex1\n:class: dropdown\n```python\nprint(1)\n```\n````\n\n"
            "```{exercise}\n:label: ch9-ex2\nAgain.\n```\n")
    assert student._without_solutions("````{solution} ch9-ex1\nonly\n````") == ""
    cleaned = student._without_solutions(text)
    assert "{solution}" not in cleaned and "print(1)" not in cleaned
    assert cleaned.count("{exercise}") == 2


def test_check_names_what_is_stale_and_writing_fixes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(student, "STUDENT", tmp_path / "student")
    assert student.main(["--check"]) == 1
    assert "out of step: student/00_tour.ipynb" in capsys.readouterr().out
    assert student.main([]) == 0
    assert sorted(p.name for p in (tmp_path / "student").iterdir()) == [c.name for c in CHAPTERS]
    assert student.main(["--check"]) == 0
