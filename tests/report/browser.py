"""Open a report in a real headless Chromium (Debian's `chromium`, driven by Playwright) and check what a reader sees.

`open_report(path)` loads the file with the network off and returns what the browser saw: console errors, every
request the page made, each figure's rendered size and whether its screenshot has any ink, and the page's text.
Used by tests/report/test_browser.py and by the end-to-end runs in tests/test_workflow.py.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI") == "true"
# As root, in a container, with no network: no sandbox, no GPU, no background connections (shared/notes, env).
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
# What counts as a figure: the inline SVG charts (each in a <figure>) and embedded images (thumbnails).
FIGURES = "figure svg, img"


def chromium_path() -> str:
    """Debian's chromium, or skip (fail under CI=true: the browser test must run in CI)."""
    found = os.environ.get("TUNEPIPE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    reason = None
    if not found:
        reason = "no chromium on PATH: `make setup` installs Debian's chromium when run as root"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "playwright is not installed: `make setup` installs the dev extras"
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return found


@dataclass
class Figure:
    tag: str
    label: str
    width: float
    height: float
    loaded: bool
    colours: int  # distinct colours in the figure's own screenshot: 1 means blank


@dataclass
class PageView:
    url: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    text: str = ""
    title: str = ""
    scripts_ran: bool = False
    screenshot: bytes = b""

    @property
    def external_requests(self) -> list[str]:
        return [url for url in self.requests if url != self.url and not url.startswith("data:")]


def _distinct_colours(png: bytes) -> int:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    return len(colours) if colours is not None else 1 << 16


def open_report(path: Path, width: int = 1280) -> PageView:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    url = Path(path).resolve().as_uri()
    view = PageView(url=url)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=FLAGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": width, "height": 900})
            page = context.new_page()
            page.on("console", lambda message: message.type in ("error", "assert") and view.console_errors.append(message.text))
            page.on("pageerror", lambda error: view.console_errors.append(f"uncaught: {error}"))
            page.on("request", lambda request: view.requests.append(request.url))
            page.on("requestfailed", lambda request: view.console_errors.append(f"request failed: {request.url}"))
            page.goto(url, wait_until="load")
            view.title = page.title()
            view.text = page.inner_text("body")
            # A <script> smuggled in through dataset text would set this; an escaped one is only text.
            view.scripts_ran = page.evaluate("() => window.__tunepipe_injected === true")
            for handle in page.query_selector_all(FIGURES):
                box = handle.bounding_box() or {"width": 0, "height": 0}
                tag = handle.evaluate("e => e.tagName.toLowerCase()")
                label = handle.evaluate(
                    "e => (e.closest('figure')?.querySelector('figcaption')?.innerText"
                    " || e.getAttribute('aria-label') || e.getAttribute('alt') || e.closest('section')?.id || '').trim()"
                )
                loaded = tag != "img" or handle.evaluate("e => e.complete && e.naturalWidth > 0")
                colours = _distinct_colours(handle.screenshot()) if box["width"] >= 1 and box["height"] >= 1 else 0
                view.figures.append(Figure(tag, label, box["width"], box["height"], loaded, colours))
            view.screenshot = page.screenshot(full_page=True)
        finally:
            browser.close()
    return view


def assert_renders_cleanly(view: PageView, min_figures: int = 1) -> None:
    """What a reader relies on: no errors, nothing fetched, every figure drawn, no injected script ran."""
    assert view.console_errors == [], view.console_errors
    assert view.external_requests == [], view.external_requests
    assert not view.scripts_ran
    assert len(view.figures) >= min_figures, f"only {len(view.figures)} figures"
    blank = [f for f in view.figures if not (f.width >= 20 and f.height >= 10 and f.loaded and f.colours > 1)]
    assert blank == [], f"figures not rendered: {blank}"
    assert _distinct_colours(view.screenshot) > 1
