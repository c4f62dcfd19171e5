"""The built book in a browser: every page of the toc reads offline and shows what it should.

The book is built once (`jupyter-book build -W --keep-going`, into a temporary folder, so the
repository's own _build is left alone), served on localhost, and each page of _toc.yml is
opened once in headless Chromium (the system's, driven by Playwright) in a fresh browser
context, with every request that leaves localhost aborted: the network is off, as for a reader
offline. What the tests check is gathered in that one visit (`PageVisit`); each test below reads
one concern of it, parametrised by page, so a failure names the page and the problem. A
full-page screenshot of every page, as a reader first sees it, goes to _build/screenshots/.

conftest.py keeps this module on one pytest-xdist worker, so the book is built once per run.
It needs Chromium (Debian: `apt-get install chromium`) and the scripts the book serves
(`npm ci`); without either it fails and says so.
"""
import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from playwright.sync_api import sync_playwright

from book_pages import toc_pages

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# sphinx-thebe 0.3.1 adds its inline settings (`const THEBE_JS_URL = ...`) to every page, and
# Sphinx 7.4 writes an inline script added after its builder started twice (once as None, once
# as ""), so the second `const` throws. Harmless: the first one stands, and thebe is not used.
KNOWN_CONSOLE_ERRORS = {"Identifier 'THEBE_JS_URL' has already been declared"}
# What MathJax leaves behind when it did not run: its delimiters, or a TeX command.
UNRENDERED_MATH = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\[A-Za-z]+")


PAGES = toc_pages()
CHAPTERS = [page for page in PAGES if page.startswith("notebooks/")]


def colab_url(chapter: str) -> str:
    """Where Colab opens a chapter's notebook: its file on the branch that _config.yml names."""
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    github_path = urlsplit(repository["url"]).path.strip("/")          # "owner/name"
    return (f"https://colab.research.google.com/github/{github_path}/blob/"
            f"{repository['branch']}/{chapter}.ipynb")


@dataclass
class PageVisit:
    """What one visit of a page found; each list holds one line per problem or item."""
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)     # aborted off-localhost ones too
    broken_media: list[str] = field(default_factory=list)        # images, videos, widgets
    dropdown_problems: list[str] = field(default_factory=list)
    dropdowns: int = 0
    links: list[dict] = field(default_factory=list)              # {"href", "text", "citation"}
    sidebar: list[str] = field(default_factory=list)             # hrefs of the sidebar's toc
    launch_buttons: list[str] = field(default_factory=list)      # Colab links in the header
    colab_badges: list[str] = field(default_factory=list)        # Colab links in the page
    unrendered_math: list[str] = field(default_factory=list)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):    # keep the test output free of one line per file
        pass


@pytest.fixture(scope="module")
def built_html(tmp_path_factory) -> Path:
    """The book built from the working tree into a temporary folder; fails with the build's log."""
    if not (ROOT / "node_modules" / "mathjax").is_dir():
        pytest.fail("node_modules/mathjax is missing: run `npm ci` at the repository root "
                    "(package.json pins MathJax and the widget scripts the book serves offline)")
    output = tmp_path_factory.mktemp("book")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")      # this environment's
    build = subprocess.run([str(jupyter_book), "build", "-W", "--keep-going",
                            "--path-output", str(output), str(ROOT)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, "the book does not build:\n" + (build.stdout + build.stderr)[-5000:]
    return output / "_build" / "html"


@pytest.fixture(scope="module")
def site(built_html):
    """The base URL of the built book, served from a thread on a free localhost port."""
    handler = functools.partial(QuietHandler, directory=str(built_html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not on PATH: install it "
                    "(Debian: apt-get install -y --no-install-recommends chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def visit(site, browser):
    """visit(page) -> its PageVisit; each page is opened once, on first use."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    print(f"screenshots of the book's pages: {SCREENSHOTS}")
    return functools.cache(lambda page: visit_page(browser, site, page))


def visit_page(browser, site: str, page_name: str) -> PageVisit:
    """Open one page offline, check it in the order a reader meets it, and record what it found."""
    found = PageVisit()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(site)
                  else route.abort("internetdisconnected"))
    page = context.new_page()
    record_errors(page, found)
    page.goto(site + page_name + ".html", wait_until="load")
    page.evaluate("() => window.MathJax?.startup?.promise")   # typeset done; absent: no math here
    found.broken_media = page.evaluate(BROKEN_MEDIA_JS)
    page.screenshot(path=SCREENSHOTS / (page_name.replace("/", "__") + ".png"), full_page=True)
    found.links = page.evaluate(LINKS_JS)
    found.sidebar = page.evaluate("() => [...document.querySelectorAll('.bd-docs-nav a.reference')]"
                                  ".map(a => a.href)")
    found.launch_buttons = page.evaluate(COLAB_LINKS_JS, ".bd-header-article")
    found.colab_badges = page.evaluate(COLAB_LINKS_JS, "article")
    found.dropdowns, found.dropdown_problems = click_every_dropdown(page)
    found.unrendered_math = page.evaluate(UNRENDERED_MATH_JS, UNRENDERED_MATH.pattern)
    context.close()
    return found


def record_errors(page, found: PageVisit) -> None:
    """Record the page's console errors, uncaught exceptions and failed requests as they come."""
    def console(message):
        if message.type == "error":
            found.console_errors.append(message.text)

    def uncaught(error):
        if error.message not in KNOWN_CONSOLE_ERRORS:
            found.console_errors.append(f"uncaught: {error.message}")

    def failed(url: str, why: str):
        if not any(line.startswith(url[:150] + " ") for line in found.failed_requests):
            found.failed_requests.append(f"{url[:150]} ({why})")    # once: a 404 is also aborted

    page.on("console", console)
    page.on("pageerror", uncaught)
    page.on("requestfailed", lambda request: failed(request.url, request.failure))
    page.on("response", lambda response: response.status >= 400
            and failed(response.url, f"HTTP {response.status}"))


# Waits (up to 10 s) for the widgets to render, the images to decode and the videos to have
# a frame, and returns a line for each that did not.
BROKEN_MEDIA_JS = """async () => {
  const within = (promise, ms) => Promise.race([promise, new Promise(done => setTimeout(done, ms))]);
  const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  const rendered = view => view.previousElementSibling?.matches('.widget-subarea:not(:empty)');
  const allRendered = async () => { while (!views.every(rendered)) await new Promise(r => setTimeout(r, 100)); };
  await within(allRendered(), 10000);
  const images = [...document.images];
  await within(Promise.allSettled(images.map(image => { image.loading = 'eager'; return image.decode(); })), 10000);
  const videos = [...document.querySelectorAll('video')];
  await within(Promise.all(videos.map(video => video.readyState >= 2 ? null
      : new Promise(done => video.addEventListener('loadeddata', done, {once: true})))), 10000);
  const name = element => (element.currentSrc || element.src || element.querySelector('source')?.src
                           || '(no source)').slice(0, 80) + (element.alt ? ` alt="${element.alt}"` : '');
  return [
    ...views.filter(view => !rendered(view)).map(view => `widget not rendered: ${view.textContent.trim().slice(0, 80)}`),
    ...images.filter(image => !(image.complete && image.naturalWidth > 0)).map(image => `image does not decode: ${name(image)}`),
    ...videos.filter(video => !(video.readyState >= 2 && video.videoWidth > 0)).map(video => `video has no frame: ${name(video)}`),
  ];
}"""

LINKS_JS = """() => [...document.querySelectorAll('a[href]')].map(a => ({
  href: a.href, text: a.innerText.trim().slice(0, 60), citation: a.closest('.bibtex-citation') !== null,
}))"""

COLAB_LINKS_JS = """where => [...document.querySelectorAll(`${where} a[href*="colab.research.google.com"]`)]
  .map(a => a.href)"""

# Opens every dropdown (so the math inside counts too) and hides code, then reads the visible
# text, and returns the text around each leftover piece of TeX, and MathJax's errors.
UNRENDERED_MATH_JS = """pattern => {
  document.querySelectorAll('.toggle-hidden').forEach(element => element.classList.remove('toggle-hidden'));
  document.querySelectorAll('details').forEach(details => { details.open = true; });
  const hideCode = document.createElement('style');
  hideCode.textContent = 'pre, code, .highlight { display: none !important; }';
  document.head.append(hideCode);
  const text = document.body.innerText;
  hideCode.remove();
  const leftovers = [];
  let shownUpTo = -1;
  for (const match of text.matchAll(new RegExp(pattern, 'g'))) {
    if (match.index < shownUpTo) continue;     // inside the snippet shown last: the same formula
    leftovers.push(text.slice(Math.max(0, match.index - 30), match.index + 50).replace(/\\s+/g, ' '));
    shownUpTo = match.index + 50;
  }
  const errors = [...document.querySelectorAll('mjx-merror')].map(error => `MathJax error: ${error.getAttribute('data-mjx-error')}`);
  return [...leftovers, ...errors];
}"""


def click_every_dropdown(page) -> tuple[int, list[str]]:
    """The number of dropdowns on the page, and why each that does not toggle does not."""
    dropdowns = page.locator(".admonition.dropdown")
    problems = [dropdown_problem(dropdowns.nth(index)) for index in range(dropdowns.count())]
    return dropdowns.count(), [problem for problem in problems if problem]


def dropdown_problem(dropdown) -> str | None:
    """Why a dropdown's content does not go hidden -> shown -> hidden on two clicks of its
    toggle, or None if it does."""
    title = repr(dropdown.locator(":scope > .admonition-title").inner_text().strip())
    content = dropdown.locator(":scope > :not(.admonition-title)").first
    toggle = dropdown.locator(":scope > .admonition-title .toggle-button")
    if toggle.count() == 0:
        return f"{title}: no toggle button (sphinx-togglebutton did not collapse it)"
    shown = [content.is_visible()]
    for _ in range(2):
        try:
            toggle.click(timeout=5000)
        except Exception as error:     # Playwright's TimeoutError: hidden or covered
            return f"{title}: cannot click its toggle ({str(error).splitlines()[0]})"
        shown.append(content.is_visible())
    if shown != [False, True, False]:
        return (f"{title}: content shown before, after one and after two clicks: {shown} "
                "(expected [False, True, False])")
    return None


@functools.cache
def anchors_in(html_file: Path) -> dict[str, str]:
    """The ids of an HTML file's elements, each with its element's role ("" for none)."""
    anchors = {}

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attributes = dict(attrs)
            if attributes.get("id"):
                anchors[attributes["id"]] = attributes.get("role") or ""

    Collector().feed(html_file.read_text())
    return anchors


def link_problem(link: dict, site: str, built_html: Path) -> str | None:
    """Why a link into the book goes nowhere (no such file, no such #anchor), or None if it lands."""
    url = urlsplit(link["href"])
    path = unquote(url.path).lstrip("/")
    target = built_html / (path + "index.html" if path.endswith("/") or not path else path)
    where = f"{link['text']!r} -> {link['href'][len(site):]}"
    if not target.is_file():
        return f"{where}: no such file"
    fragment = unquote(url.fragment)
    if fragment and target.suffix == ".html" and fragment not in anchors_in(target):
        return f"{where}: no #{fragment} in {path}"
    if link["citation"] and anchors_in(target).get(fragment) != "doc-biblioentry":
        return f"{where}: a citation that does not land on a bibliography entry"
    return None


def fail_on(problems: list[str], heading: str, shown: int = 8) -> None:
    """Fail with the heading and the first problems, one a line, if there are any (no
    traceback: the heading names the page and the check)."""
    if problems:
        more = [f"... and {len(problems) - shown} more"] if len(problems) > shown else []
        pytest.fail("\n  ".join([heading] + problems[:shown] + more), pytrace=False)


@pytest.mark.parametrize("page", PAGES)
def test_page_reads_offline_without_errors(visit, page):
    found = visit(page)
    fail_on(found.failed_requests,
            f"{page}: requests that failed (the book must read offline, from its own files):")
    fail_on(found.console_errors, f"{page}: console errors:")


@pytest.mark.parametrize("page", PAGES)
def test_images_videos_and_widgets_show(visit, page):
    fail_on(visit(page).broken_media, f"{page}:")


@pytest.mark.parametrize("page", PAGES)
def test_math_is_typeset(visit, page):
    fail_on(visit(page).unrendered_math,
            f"{page}: TeX left in the visible text (outside code): MathJax did not typeset it:")


@pytest.mark.parametrize("page", PAGES)
def test_dropdowns_open_and_close(visit, page):
    fail_on(visit(page).dropdown_problems, f"{page}: dropdowns that do not toggle:")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_has_solution_dropdowns(visit, chapter):
    fail_on([] if visit(chapter).dropdowns else ["none found"], f"{chapter}: solution dropdowns:")


@pytest.mark.parametrize("page", PAGES)
def test_internal_links_and_citations_land(visit, site, built_html, page):
    internal = [link for link in visit(page).links if link["href"].startswith(site)]
    fail_on([problem for link in internal if (problem := link_problem(link, site, built_html))],
            f"{page}: links that go nowhere:")


@pytest.mark.parametrize("page", PAGES)
def test_sidebar_lists_the_pages_of_the_toc_in_order(visit, page):
    listed = [urlsplit(href).path.lstrip("/").removesuffix(".html") for href in visit(page).sidebar]
    fail_on([] if list(dict.fromkeys(listed)) == PAGES else [f"it lists {listed}", f"_toc.yml has {PAGES}"],
            f"{page}: the sidebar does not list the pages of _toc.yml in order:")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_launch_button_and_badge_open_this_chapter_in_colab(visit, chapter):
    found, expected = visit(chapter), colab_url(chapter)
    missing = (["no launch button in the header"] * (not found.launch_buttons)
               + ["no Open-in-Colab badge in the page"] * (not found.colab_badges))
    wrong = [f"{url} is not {expected}" for url in found.launch_buttons + found.colab_badges
             if url != expected]
    fail_on(missing + wrong, f"{chapter}: Colab links that do not open this chapter:")
