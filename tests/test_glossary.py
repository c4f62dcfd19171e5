"""Glossary links: every page links the first use of each glossary term, and every link resolves.

Pure text: it reads book/glossary.md, _toc.yml and the prose of each page of the toc (a
markdown page, or a notebook's markdown cells in order); it builds and runs nothing.

What counts as a use of a term (`first_plain_use`):
- the term, case-insensitively, between word boundaries, with an optional plural "s"/"es"; a
  space or hyphen inside it may be a space, a hyphen, a line break or nothing
  ("temporal down-sampling" = "temporal downsampling");
- or one of its ALIASES: the spelled-out form of an abbreviation ("spatial super-resolution"
  for SSR) or another form of the phrase ("temporally aliased");
- in prose only (`read_prose`): headings and the terms of definition lists are labels, so the
  first use in the body is the one linked; code spans and blocks, math, roles other than
  {term}, link URLs, HTML and directive options are not prose. A lone $v$, $x_0$ or
  $\\epsilon$ just before "prediction" reads as its word. Exercise and solution bodies are prose.
A {term} link counts as a use of its target, and its text is not searched for other terms.
"""
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from book_pages import toc_pages

ROOT = Path(__file__).resolve().parent.parent
GLOSSARY = ROOT / "book" / "glossary.md"
NOT_CHECKED = {"book/glossary", "book/references"}   # the definitions; the bibliography

ALIASES = {
    "DDIM": ["denoising diffusion implicit model"],
    "DDPM": ["denoising diffusion probabilistic model"],
    "EMA": ["exponential moving average"],
    "epsilon prediction": ["eps prediction"],
    "factorized space-time convolution": ["factorized (2+1)D convolution", "factorized convolution"],
    "SSR": ["spatial super-resolution"],
    "STUNet": ["Space-Time U-Net"],
    "T2I": ["text-to-image"],
    "temporal aliasing": ["temporally aliased"],
    "temporal down-sampling": ["temporal down- and up-sampling", "temporal down- or up-sampling",
                               "temporal down/up-sampling"],
    "TSR": ["temporal super-resolution"],
}

HIDE = "\x00"            # masked text becomes this: not a word character, not a space
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*(.*)$")
HEADING = re.compile(r"^ {0,3}#{1,6}(\s|$)")
DEFINITION = re.compile(r"^:\s")                    # a definition list's ": definition" line
DIRECTIVE_OPTION = re.compile(r"^\s*:[\w-]+:")
CODE_DIRECTIVES = {"code", "code-block", "code-cell", "sourcecode", "math", "raw",
                   "literalinclude", "bibliography"}
BACKTICKS = re.compile(r"(\{[\w:.-]+\})?(`+)")        # a role's name, then its opening run
SYMBOL_BEFORE_PREDICTION = re.compile(r"\$(v|x_0|\\epsilon)\$(?=[\s-]*prediction)", re.I)
SYMBOL_WORDS = {"v": "v", "x_0": "x0", "\\epsilon": "epsilon"}
MATH = re.compile(r"\$\$.*?\$\$|\$[^$]+?\$", re.S)
HIDDEN_INLINE = [re.compile(r"\]\([^)]*\)"),          # a link's URL
                 re.compile(r"<!--.*?-->", re.S),     # an HTML comment
                 re.compile(r"</?[A-Za-z][^>\n]*>")]  # an HTML tag
LINK_TARGET = re.compile(r"<([^<>]+)>\s*$")        # the target of "text <target>"


def glossary_terms() -> list[str]:
    """The terms of book/glossary.md's {glossary} directive: its unindented lines."""
    text = GLOSSARY.read_text()
    body = re.search(r"^```\{glossary\}\n(.*?)^```", text, re.S | re.M).group(1)
    return [line.strip() for line in body.splitlines()
            if line.strip() and not line[0].isspace() and not line.startswith(":")]


def page_cells(page: str) -> list[str]:
    """A page's markdown: the file for a .md page, the markdown cells for a notebook."""
    if (ROOT / f"{page}.md").exists():
        return [(ROOT / f"{page}.md").read_text()]
    notebook = json.loads((ROOT / f"{page}.ipynb").read_text())
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "markdown"]


@dataclass
class Prose:
    """A page's markdown with everything but prose replaced by HIDE, position for position."""
    text: str                               # the original markdown, cells joined by blank lines
    prose: str                              # the same length: non-prose characters are HIDE
    links: list[tuple[int, str, str]]       # (offset, target, the role as written) per {term}
    cell_starts: list[int]                  # where each markdown cell begins in `text`

    def where(self, offset: int) -> str:
        """The markdown cell (counting markdown cells from 1) and line around an offset."""
        cell = sum(start <= offset for start in self.cell_starts)
        start = self.text.rfind("\n", 0, offset) + 1
        end = self.text.find("\n", offset)
        line = self.text[start:end if end >= 0 else None].strip()
        return f"markdown cell {cell}: {line!r}" if len(self.cell_starts) > 1 else repr(line)


def hide(chars: list[str], start: int, end: int) -> None:
    for i in range(start, end):
        if chars[i] != "\n":
            chars[i] = HIDE


def is_definition_term(lines: list[str], number: int) -> bool:
    """Whether line `number` is a definition list's term: its definition (": ...") follows,
    on the next line or after one blank line."""
    line, after = lines[number], lines[number + 1:number + 3]
    if not line.strip() or DEFINITION.match(line) or not after:
        return False
    return bool(DEFINITION.match(after[0])
                or (not after[0].strip() and len(after) > 1 and DEFINITION.match(after[1])))


def read_prose(page: str) -> Prose:
    cells = page_cells(page)
    text = "\n\n".join(cells)
    cell_starts, offset = [], 0
    for cell in cells:
        cell_starts.append(offset)
        offset += len(cell) + 2
    chars = list(text)

    # Lines: fenced code and math, directive fences and options, headings, definition terms.
    fences = []                     # open fences: (character run, is code)
    offset = 0
    lines = text.split("\n")
    for number, line in enumerate(lines):
        fence = FENCE.match(line)
        in_code = bool(fences) and fences[-1][1]
        closes = (fence and fences and not fence.group(2) and fence.group(1)[0] == fences[-1][0][0]
                  and len(fence.group(1)) >= len(fences[-1][0]))
        if closes:
            fences.pop()
            hide(chars, offset, offset + len(line))
        elif in_code:
            hide(chars, offset, offset + len(line))
        elif fence:
            name = re.match(r"\{([\w-]+)\}", fence.group(2))
            fences.append((fence.group(1), not name or name.group(1) in CODE_DIRECTIVES))
            hide(chars, offset, offset + len(line))
        elif (HEADING.match(line) or (fences and DIRECTIVE_OPTION.match(line))
              or is_definition_term(lines, number)):
            hide(chars, offset, offset + len(line))
        offset += len(line) + 1

    # Inline: roles (recording {term} links) and code spans, each up to its closing backticks.
    links = []
    masked = "".join(chars)
    position = 0
    while match := BACKTICKS.search(masked, position):
        run = match.group(2)
        closing = re.compile(rf"(?<!`){run}(?!`)").search(masked, match.end())
        if closing is None:
            position = match.end()
            continue
        if match.group(1) == "{term}":
            content = text[match.end():closing.start()]     # "target" or "text <target>"
            target = LINK_TARGET.search(content)
            links.append((match.start(), (target.group(1) if target else content).strip(),
                          text[match.start():closing.end()]))
        hide(chars, match.start(), closing.end())
        masked = "".join(chars)
        position = closing.end()

    # Math, except a lone symbol naming a parameterisation, which reads as its word.
    for symbol in SYMBOL_BEFORE_PREDICTION.finditer(masked):
        word = SYMBOL_WORDS[symbol.group(1).lower()]
        hide(chars, symbol.start(), symbol.end() - len(word))
        chars[symbol.end() - len(word):symbol.end()] = list(word)
    masked = "".join(chars)
    for pattern in [MATH, *HIDDEN_INLINE]:
        for span in pattern.finditer(masked):
            hide(chars, span.start(), span.end())
        masked = "".join(chars)
    return Prose(text, masked, links, cell_starts)


def term_pattern(phrase: str) -> re.Pattern:
    """A phrase, case-insensitively, between word boundaries, with an optional plural; a space or
    hyphen inside it may be a space, a hyphen, a line break or nothing."""
    words = [re.escape(word) for word in re.split(r"[\s-]+", phrase)]
    return re.compile(r"\b" + r"[ \t\n-]*".join(words) + r"(?:e?s)?\b", re.I)


def first_plain_use(prose: Prose, term: str) -> int | None:
    """The offset of the first unlinked use of a term or its aliases in prose, or None."""
    starts = [match.start() for phrase in [term, *ALIASES.get(term, [])]
              if (match := term_pattern(phrase).search(prose.prose))]
    return min(starts, default=None)


TERMS = glossary_terms()
PAGES = [page for page in toc_pages() if page not in NOT_CHECKED]


def test_glossary_parses():
    assert len(TERMS) > 20 and "MultiDiffusion" in TERMS and "classifier-free guidance" in TERMS
    assert set(ALIASES) <= set(TERMS), "ALIASES names terms the glossary does not define"


@pytest.mark.parametrize("page", PAGES)
def test_first_use_of_each_term_is_linked(page):
    prose = read_prose(page)
    unlinked = []
    for term in TERMS:
        plain = first_plain_use(prose, term)
        linked = min((offset for offset, target, _ in prose.links if target.lower() == term.lower()),
                     default=None)
        if plain is not None and (linked is None or plain < linked):
            unlinked.append(f"  {term!r}, first used unlinked in {prose.where(plain)}")
    assert not unlinked, (f"{page}: the first use of each glossary term should be a "
                          "{term} link:\n" + "\n".join(unlinked))


@pytest.mark.parametrize("page", [*PAGES, "book/glossary"])
def test_term_links_name_glossary_terms(page):
    known = {term.lower() for term in TERMS}
    prose = read_prose(page)
    unknown = [f"  {role} in {prose.where(offset)}" for offset, target, role in prose.links
               if target.lower() not in known]
    assert not unknown, f"{page}: {{term}} links to terms the glossary does not define:\n" + "\n".join(unknown)
