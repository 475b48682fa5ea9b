"""Browser: a built email -> what a reader's screen shows (measured figures, screenshots), via headless Chromium.

Debian's chromium is driven by Playwright; Playwright's own browser download is never used. Remote
images are answered with a generated PNG, so layout is realistic and no network request leaves
the machine.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .colours import contrast_ratio, hex_colour, over, parse_colour, placeholder_png
from .errors import NewsletterError

__all__ = [
    "WIDTHS",
    "SCHEMES",
    "MIN_FONT_PX",
    "MIN_LINE_HEIGHT",
    "MIN_TAP_PX",
    "MIN_CONTRAST",
    "MAX_CHARS_PER_LINE",
    "MAX_CONTENT_PX",
    "BrowserError",
    "BrowserUnavailable",
    "TextSample",
    "ImageBox",
    "Measurement",
    "chromium_path",
    "open_browser",
    "contrast_ratio",
    "measure",
    "screenshot",
    "take_screenshots",
]

WIDTHS = (375, 600)
SCHEMES = ("light", "dark")
# For readers with MS (fatigue, optic neuritis, magnifiers): 16 px text at every width, paragraphs
# with 1.5 line height (WCAG 1.4.12) and at most 70 characters a line (WCAG 1.4.8 asks for 80).
MIN_FONT_PX = 16.0
MIN_LINE_HEIGHT = 1.5
MIN_TAP_PX = 44.0
MIN_CONTRAST = 4.5  # WCAG AA for normal-size text
MAX_CHARS_PER_LINE = 70
MAX_CONTENT_PX = 600
_VIEWPORT_HEIGHT = {375: 812, 600: 900}
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync")


class BrowserError(NewsletterError):
    """The browser could not open or photograph a page; `path` names it."""

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class BrowserUnavailable(BrowserError):
    """No usable Chromium (or Playwright) on this machine; `reason` says what is missing."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"browser checks need Debian's chromium and Playwright: {reason}")


@dataclass(frozen=True)
class TextSample:
    """One element that shows text, as the browser computed it."""

    tag: str
    block: str  # the nearest enclosing block (h1, p, li, td...), e.g. "h2" for a title's link
    css_class: str
    text: str
    font_px: float
    color: tuple[float, float, float, float]
    background: tuple[float, float, float]
    contrast: float


@dataclass(frozen=True)
class ImageBox:
    src: str
    alt: str
    left: float
    right: float
    width: float
    loaded: bool


@dataclass(frozen=True)
class Measurement:
    """Figures for one page at one width in one colour scheme."""

    width: int
    scheme: str
    viewport_width: int
    scroll_width: int
    content_width: float
    content_right: float  # the right edge of the furthest-reaching element, clipped or not
    texts: tuple[TextSample, ...]
    heading_px: tuple[float, ...]
    paragraph_px: tuple[float, ...]
    max_chars_per_line: float
    tap_targets: tuple[float, ...]
    images: tuple[ImageBox, ...]
    required: dict[str, bool]
    preheader_shown: bool
    blocked_requests: tuple[str, ...] = field(default=())
    line_heights: tuple[tuple[str, float], ...] = field(default=())  # (paragraph's start, line height / font size)
    justified: tuple[str, ...] = field(default=())  # text of elements set in justified type
    animations: int = 0  # running CSS animations and transitions, <marquee> and <blink>

    @property
    def min_font_px(self) -> float:
        return min(t.font_px for t in self.texts)

    @property
    def min_contrast(self) -> float:
        return min(t.contrast for t in self.texts)

    @property
    def min_tap_px(self) -> float:
        return min(self.tap_targets, default=0.0)

    def problems(self) -> list[str]:
        """What a reader would trip over, one sentence each; empty when the page passes."""
        where = f"at {self.width} px ({self.scheme})"
        out: list[str] = []
        if self.scroll_width > self.viewport_width:
            out.append(f"horizontal scroll {where}: the document is {self.scroll_width} px wide "
                       f"in a {self.viewport_width} px viewport")
        if self.content_right > self.viewport_width + 0.5:
            out.append(f"content {where} reaches {self.content_right:.0f} px, past the {self.viewport_width} px "
                       "viewport (scrolled or cut off)")
        if self.content_width > MAX_CONTENT_PX:
            out.append(f"content column {where} is {self.content_width:.0f} px (limit {MAX_CONTENT_PX})")
        for t in self.texts:
            if t.font_px < MIN_FONT_PX:
                out.append(f"text {where} is {t.font_px:g} px (limit {MIN_FONT_PX:g}): <{t.tag}> {t.text!r}")
            if t.contrast < MIN_CONTRAST:
                out.append(f"contrast {where} is {t.contrast:.2f}:1 (limit {MIN_CONTRAST}): <{t.tag}> {t.text!r} "
                           f"colour {hex_colour(t.color)} on {hex_colour(t.background)}")
        if self.heading_px and self.paragraph_px and min(self.heading_px) <= max(self.paragraph_px):
            out.append(f"headings {where} ({min(self.heading_px):g} px) are not larger than body text "
                       f"({max(self.paragraph_px):g} px)")
        if self.max_chars_per_line > MAX_CHARS_PER_LINE:
            out.append(f"lines {where} hold about {self.max_chars_per_line:.0f} characters "
                       f"(limit {MAX_CHARS_PER_LINE})")
        if not self.tap_targets:
            out.append(f"no 'Read more' links found {where}")
        for height in self.tap_targets:
            if height < MIN_TAP_PX:
                out.append(f"a 'Read more' tap target {where} is {height:g} px high (limit {MIN_TAP_PX:g})")
        for img in self.images:
            if not img.alt.strip():
                out.append(f"image {img.src} has no alt text")
            if img.right > self.viewport_width + 0.5 or img.left < -0.5:
                out.append(f"image {img.src} {where} spans {img.left:.0f}..{img.right:.0f} px, "
                           f"outside the {self.viewport_width} px viewport")
            if not img.loaded:
                out.append(f"image {img.src} did not load")
        for name, shown in self.required.items():
            if not shown:
                out.append(f"the {name} is not visible {where}")
        if self.preheader_shown:
            out.append(f"the preheader shows in the body {where}")
        for text, ratio in self.line_heights:
            if ratio < MIN_LINE_HEIGHT - 0.01:
                out.append(f"line height {where} is {ratio:.2f} (limit {MIN_LINE_HEIGHT}): {text!r}")
        for text in self.justified:
            out.append(f"justified text {where} (uneven gaps are hard to read): {text!r}")
        if self.animations:
            out.append(f"{self.animations} animation(s) {where}")
        for url in self.blocked_requests:
            out.append(f"the page tried to fetch {url}")
        return out

    def figures(self) -> dict[str, Any]:
        """The headline numbers, for reports."""
        return {"width": self.width, "scheme": self.scheme, "scroll_width": self.scroll_width,
                "content_right": round(self.content_right, 1),
                "content_width": round(self.content_width, 1), "min_font_px": self.min_font_px,
                "min_heading_px": min(self.heading_px, default=0.0),
                "max_chars_per_line": round(self.max_chars_per_line, 1),
                "min_tap_px": round(self.min_tap_px, 1), "min_contrast": round(self.min_contrast, 2),
                "min_line_height": round(min((r for _, r in self.line_heights), default=0.0), 2)}


def chromium_path() -> Path | None:
    """Debian's chromium ($NEWSLETTER_CHROMIUM overrides); never Playwright's downloaded browser."""
    configured = os.environ.get("NEWSLETTER_CHROMIUM")
    candidates = [configured] if configured else [shutil.which("chromium"), "/usr/bin/chromium"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


@contextmanager
def open_browser() -> Iterator[Any]:
    """One headless Chromium for many pages; raises BrowserUnavailable when it cannot start."""
    executable = chromium_path()
    if executable is None:
        raise BrowserUnavailable("no chromium executable (apt-get install chromium, or set NEWSLETTER_CHROMIUM)")
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BrowserUnavailable("the playwright package is not installed (pip install -e '.[test]')") from None
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=str(executable), args=list(CHROMIUM_ARGS))
        except PlaywrightError as exc:
            raise BrowserUnavailable(f"{executable} did not start: {str(exc).splitlines()[0]}") from None
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def _page(browser: Any, html_path: Path, width: int, scheme: str) -> Iterator[tuple[Any, list[str]]]:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, not {scheme!r}")
    context = browser.new_context(viewport={"width": width, "height": _VIEWPORT_HEIGHT.get(width, 900)},
                                  color_scheme=scheme, device_scale_factor=1)
    blocked: list[str] = []

    def answer(route: Any) -> None:
        request = route.request
        if request.url.startswith(("file:", "data:", "about:")):
            route.continue_()
        elif request.resource_type == "image":
            route.fulfill(status=200, content_type="image/png", body=placeholder_png())
        else:
            blocked.append(request.url)
            route.abort()

    from playwright.sync_api import Error as PlaywrightError

    try:
        context.route("**/*", answer)
        page = context.new_page()
        try:
            page.goto(Path(html_path).resolve().as_uri(), wait_until="load")
        except PlaywrightError as exc:
            raise BrowserError(f"could not open it: {str(exc).splitlines()[0]}", path=html_path) from None
        yield page, blocked
    finally:
        context.close()


#: Runs in the page (a JavaScript function of one argument, kept beside this module): collects raw
#: computed values; the Python side turns them into figures.
_COLLECT = (Path(__file__).parent / "browser_collect.js").read_text(encoding="utf-8")


def _canvas(raw: dict[str, Any], scheme: str) -> tuple[float, float, float]:
    # The root's own background, else the UA canvas for the scheme (dark canvas when color-scheme allows it).
    for css in (raw["canvas"], raw["bodyBg"]):
        color = parse_colour(css)
        if color[3] >= 1:
            return color[:3]
    return (18.0, 18.0, 18.0) if scheme == "dark" else (255.0, 255.0, 255.0)


def _text_sample(item: dict[str, Any], canvas: tuple[float, float, float]) -> TextSample:
    background = canvas
    for css in reversed(item["layers"]):
        background = over(parse_colour(css), background)
    color = parse_colour(item["color"])
    return TextSample(tag=item["tag"], block=item["block"], css_class=item["cls"], text=item["text"],
                      font_px=item["font"], color=color, background=background, contrast=contrast_ratio(color, background))


def measure(html_path: Path, width: int, scheme: str, *, browser: Any | None = None, preheader: str = "",
            postal_address: str = "", strip_styles: bool = False) -> Measurement:
    """Open the email at `width` px in `scheme` and measure what a reader meets.

    `strip_styles` removes every <style> element first, as some webmail clients do, so only
    inline styles and attributes remain.
    """
    if browser is None:
        with open_browser() as own:
            return measure(html_path, width, scheme, browser=own, preheader=preheader,
                           postal_address=postal_address, strip_styles=strip_styles)
    with _page(browser, html_path, width, scheme) as (page, blocked):
        raw = page.evaluate(_COLLECT, {"preheader": preheader, "postal": postal_address,
                                       "stripStyles": strip_styles})
    canvas = _canvas(raw, scheme)
    return Measurement(
        width=width, scheme=scheme, viewport_width=int(raw["viewport"]), scroll_width=int(raw["scroll"]),
        content_width=float(raw["content"]), content_right=float(raw["right"]),
        texts=tuple(_text_sample(t, canvas) for t in raw["texts"]),
        heading_px=tuple(raw["headings"]), paragraph_px=tuple(raw["paragraphs"]),
        max_chars_per_line=float(raw["maxChars"]), tap_targets=tuple(raw["taps"]),
        images=tuple(ImageBox(**i) for i in raw["images"]), required=dict(raw["required"]),
        preheader_shown=bool(raw["preheaderShown"]), blocked_requests=tuple(blocked),
        line_heights=tuple((text, float(ratio)) for text, ratio in raw["lineHeights"]),
        justified=tuple(raw["justified"]), animations=int(raw["animations"]),
    )


def screenshot(html_path: Path, out_png: Path, width: int, scheme: str, *, browser: Any | None = None) -> Path:
    """A full-page PNG of the email as a reader at `width` px in `scheme` sees it."""
    if browser is None:
        with open_browser() as own:
            return screenshot(html_path, out_png, width, scheme, browser=own)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with _page(browser, html_path, width, scheme) as (page, _):
        page.screenshot(path=str(out_png), full_page=True)
    return out_png


def take_screenshots(preview_html: Path, out_dir: Path, *, browser: Any | None = None) -> list[Path]:
    """email-{375,600}-{light,dark}.png of the preview in `out_dir`, one browser for all four."""
    if browser is None:
        with open_browser() as own:
            return take_screenshots(preview_html, out_dir, browser=own)
    return [screenshot(preview_html, Path(out_dir) / f"email-{width}-{scheme}.png", width, scheme, browser=browser)
            for width in WIDTHS for scheme in SCHEMES]
