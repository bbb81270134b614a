"""Looks at the built site as a reader would: pages opened in headless Chromium.

For each page it checks, in the DOM that Chromium holds after the page's scripts
ran, that MathJax typeset the maths (``mjx-container`` elements, and no TeX source
such as ``\\frac`` or ``\\(`` left in the text outside code blocks, where a
tutorial's source may show it) and that every image the page shows is a file of
the site. It saves a screenshot of each page into ``--screenshots``.
Chromium reads the files from disk: a page that needed a CDN would show raw TeX.

    python docs/check_site.py docs/_build/html --screenshots docs/_build/screenshots

Exits 1, naming the page and the problem, when a check fails; 2 when Chromium is
missing (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

# The entry page, the guide (README, with its figures), the tutorial gallery (thumbnails),
# one tutorial's page (its maths and figures), the reproduction's curves and API pages with
# display maths.
PAGES = (
    "index.html",
    "guide.html",
    "tutorials/index.html",
    "tutorials/07_elbo_three_ways.html",
    "REPRODUCTION.html",
    "api/models.html",
    "api/inference.html",
)
TEX_LEFT = (r"\frac", r"\mathbb", r"\mathrm", r"\log", r"\(", r"\[", "$$")
_NOT_TEXT = ("script", "style", "pre")  # a code block shows source, TeX included
_BROWSER = ("chromium", "chromium-browser", "google-chrome")
_BUDGET_MS = "15000"  # virtual time for the scripts (MathJax) to finish


class _Page(HTMLParser):
    """The text outside scripts, styles and code blocks, the typeset maths and the images."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.images: list[str] = []
        self.typeset = 0
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _NOT_TEXT:
            self._skip += 1
        elif tag == "mjx-container":
            self.typeset += 1
        elif tag == "img":
            self.images.extend(value for name, value in attrs if name == "src" and value)

    def handle_endtag(self, tag: str) -> None:
        if tag in _NOT_TEXT:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


def _chromium() -> str:
    for name in _BROWSER:
        if path := shutil.which(name):
            return path
    print(f"no Chromium found ({', '.join(_BROWSER)}); on Debian: apt-get install chromium",
          file=sys.stderr)  # fmt: skip
    sys.exit(2)


def _run(browser: str, *args: str) -> str:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu",
               f"--virtual-time-budget={_BUDGET_MS}", *args]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def problems_of(page: str, path: Path, dom: str) -> list[str]:
    """The problems of one page, from its file on disk and the DOM after its scripts ran.

    Args:
        page: the page's name in the site, for the messages (``api/models.html``).
        path: the page's file; images are looked for relative to its folder.
        dom: the page's DOM as Chromium serialised it (``--dump-dom``).
    """
    parsed = _Page()
    parsed.feed(dom)
    problems = []
    has_maths = 'class="math' in path.read_text()
    if has_maths and parsed.typeset == 0:
        problems.append(f"{page}: its maths was not typeset (no mjx-container after the scripts)")
    text = "".join(parsed.text)
    left = [tex for tex in TEX_LEFT if tex in text]
    if left:
        problems.append(f"{page}: TeX source left on the page: {', '.join(left)}")
    for src in parsed.images:
        if re.match(r"^(https?:)?//", src):
            problems.append(f"{page}: image {src} is not part of the site")
        elif not (path.parent / src.split("#")[0].split("?")[0]).is_file():
            problems.append(f"{page}: image {src} is missing")
    print(f"{page}: {parsed.typeset} formulas typeset, {len(parsed.images)} images")
    return problems


def check_page(browser: str, site: Path, page: str, screenshots: Path) -> list[str]:
    """The problems of one page opened in Chromium (none: it passed); saves its screenshot."""
    path = site / page
    if not path.is_file():
        return [f"{page}: not in the built site {site}"]
    url = path.resolve().as_uri()
    problems = problems_of(page, path, _run(browser, "--dump-dom", url))
    shot = screenshots / (page.replace("/", "_").removesuffix(".html") + ".png")
    _run(browser, f"--screenshot={shot}", "--window-size=1280,1600", url)
    if not shot.is_file() or shot.stat().st_size == 0:
        problems.append(f"{page}: Chromium wrote no screenshot")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="the built site (docs/_build/html)")
    parser.add_argument("--screenshots", type=Path, default=Path("docs/_build/screenshots"))
    parser.add_argument("--pages", nargs="*", default=list(PAGES))
    args = parser.parse_args()
    browser = _chromium()
    args.screenshots.mkdir(parents=True, exist_ok=True)
    problems = [
        p for page in args.pages for p in check_page(browser, args.site, page, args.screenshots)
    ]
    if problems:
        sys.exit("\n".join(problems))


if __name__ == "__main__":
    main()
