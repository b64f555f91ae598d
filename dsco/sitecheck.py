"""Checks of a built book site: every page loads, shows no error and needs nothing from the network.

:func:`check_html` parses every page of a site that :func:`dsco.book.build` wrote and returns one
line per problem (an error output cell, a missing image or asset, anything loaded from a CDN, math
without the local MathJax, a code line too long for the book's column); ``build`` fails on any.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: The longest code line a notebook cell may show (no horizontal scrollbar in the book's column).
CODE_LINE_LIMIT = 100
#: Hosts that must never serve a script, stylesheet, font or image of the built site.
CDN_MARKERS = (
    "cdn.jsdelivr",
    "unpkg.com",
    "googleapis",
    "gstatic",
    "cdnjs",
    "cloudflare",
    "mybinder",
    "thebe",
)

_REMOTE = re.compile(r"^(https?:)?//", re.I)


def check_html(html_dir: str | Path) -> list[str]:
    """Problems in a built site, one line each (empty list: none). Every page is parsed and flagged
    for:

    * an error output cell: myst-nb renders a notebook error output as a ``div`` with classes
      ``output traceback`` (a stream to stderr is ``output stderr`` and is *not* an error: warnings
      and text progress bars go there); a cell tagged ``raises-exception`` (an error shown on
      purpose, which papermill also lets pass) is exempt; papermill's "An Exception was
      encountered" banner is flagged too;
    * an ``<img>`` whose local file is missing (``data:`` URIs are fine);
    * a local ``<script src>`` or ``<link href>`` whose file is missing;
    * anything loaded from the network: a remote ``src`` (script, img, iframe, source, ...), a
      remote ``<link href>``, a CDN host (:data:`CDN_MARKERS`) in an inline script or style, a
      remote ``url(...)`` / ``@import`` in the site's CSS; plain hyperlinks (``<a href>``) are fine;
    * math (``class="math"``) on a page that does not load the local MathJax;
    * a code line of a cell's input longer than :data:`CODE_LINE_LIMIT` characters (the page would
      need a horizontal scrollbar).
    """
    from bs4 import BeautifulSoup

    html_dir = Path(html_dir)
    if not (html_dir / "index.html").is_file():
        return [f"{html_dir}: no index.html (the book was not built)"]
    problems: list[str] = []
    pages = [
        p
        for p in sorted(html_dir.rglob("*.html"))
        if not {"_static", "_sources", "_images"} & set(p.relative_to(html_dir).parts)
    ]
    for page in pages:
        rel = page.relative_to(html_dir).as_posix()
        soup = BeautifulSoup(page.read_text(encoding="utf8", errors="replace"), "html.parser")

        def local_missing(url):
            path = unquote(urlsplit(url).path)
            return bool(path) and not (page.parent / path).exists()

        for div in soup.select("div.output.traceback"):
            cell = div.find_parent("div", class_="cell")
            if cell is not None and "tag_raises-exception" in cell.get("class", []):
                continue  # an error the notebook shows on purpose (papermill lets it pass too)
            first = next((ln for ln in div.get_text().splitlines() if ln.strip()), "")
            last = next((ln for ln in reversed(div.get_text().splitlines()) if ln.strip()), "")
            problems.append(f"{rel}: error output cell: {last.strip() or first.strip()}")
        if (
            soup.find(id="papermill-error-cell")
            or "An Exception was encountered at" in soup.get_text()
        ):
            problems.append(f"{rel}: papermill error banner (the notebook failed while executing)")

        for tag in soup.find_all(src=True):
            src = tag["src"].strip()
            if src.startswith("data:"):
                continue
            if _REMOTE.match(src):
                problems.append(f"{rel}: <{tag.name}> loads {src} from the network")
            elif local_missing(src):
                what = "image" if tag.name == "img" else f"<{tag.name}> source"
                problems.append(f"{rel}: missing {what} {src}")
        for tag in soup.find_all("link", href=True):
            href = tag["href"].strip()
            if _REMOTE.match(href):
                problems.append(
                    f"{rel}: <link rel={' '.join(tag.get('rel', []))}> loads {href} "
                    f"from the network"
                )
            elif {"stylesheet", "preload", "icon"} & set(tag.get("rel", [])) and local_missing(
                href
            ):
                problems.append(f"{rel}: missing stylesheet/asset {href}")
        for tag in soup.find_all(["script", "style"]):
            text = tag.string or ""
            for marker in CDN_MARKERS:
                if marker in text:
                    problems.append(f"{rel}: inline <{tag.name}> mentions {marker} (a CDN)")
        # the cell papermill injects holds the user's own values (paths of any length), not
        # authored code
        for pre in soup.select("div.cell:not(.tag_injected-parameters) div.cell_input pre"):
            widest = max((len(line) for line in pre.get_text().splitlines()), default=0)
            if widest > CODE_LINE_LIMIT:
                problems.append(
                    f"{rel}: a code line of {widest} characters (over {CODE_LINE_LIMIT}: "
                    "wrap it, e.g. ruff format --line-length 100)"
                )
        if soup.select(".math"):
            scripts = [s["src"] for s in soup.find_all("script", src=True)]
            if not any("mathjax" in s.lower() and not _REMOTE.match(s) for s in scripts):
                problems.append(f"{rel}: page has math but does not load the local MathJax")

    for css in (
        sorted((html_dir / "_static").rglob("*.css")) if (html_dir / "_static").is_dir() else []
    ):
        text = css.read_text(encoding="utf8", errors="replace")
        for m in re.finditer(r"(@import\s+(url\()?|url\()\s*['\"]?((https?:)?//[^'\")\s]+)", text):
            problems.append(f"{css.relative_to(html_dir).as_posix()}: CSS loads {m.group(3)}")
    return problems
