"""The built email as subscribers see it: Debian's chromium at 375 and 600 px, light and dark.

The sample issue (6 summaries) and a 10-summary variant are built once per module and opened in one
browser. Remote images are answered with a generated PNG, so nothing leaves the machine.
Without chromium these tests skip, unless NEWSLETTER_REQUIRE_BROWSER=1 (CI), when they fail.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import sample_project

from newsletter import render
from newsletter.browser import (
    MAX_CONTENT_PX,
    MIN_CONTRAST,
    SCHEMES,
    WIDTHS,
    Measurement,
    contrast_ratio,
    measure,
    take_screenshots,
)
from newsletter.jobs.issues import BuildResult, build, compose
from newsletter.settings import load_settings

DATE = dt.date(2026, 11, 25)
VARIANTS = {"sample": None, "ten": 10}  # compose --limit: None = the default 6
SIZE_LIMIT = 60 * 1024


def _build_sample(root: Path, limit: int | None) -> BuildResult:
    sample_project(root)
    # Every sample summary, however old: the looks are measured with the images and lengths they bring.
    settings = load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET": "test-secret-not-for-production-use"},
                             overrides={"max_age_days": 3650})
    issue = compose(settings, date=DATE, limit=limit)
    return build(settings, issue.folder)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuildResult]:
    base = tmp_path_factory.mktemp("browser")
    return {name: _build_sample(base / name, limit) for name, limit in VARIANTS.items()}


Measure = Callable[..., Measurement]


@pytest.fixture(scope="module")
def measured(browser: Any, samples: dict[str, BuildResult]) -> Measure:
    """measured(variant, width, scheme, strip_styles=False), each page opened once per module."""
    cache: dict[tuple[str, int, str, bool], Measurement] = {}

    def get(variant: str, width: int, scheme: str, *, strip_styles: bool = False) -> Measurement:
        key = (variant, width, scheme, strip_styles)
        if key not in cache:
            result = samples[variant]
            # What a reader gets is the personalised email; the preview is it with neutral values.
            cache[key] = measure(result.issue.build_dir / render.PREVIEW_FILE, width, scheme, browser=browser,
                                 preheader=result.issue.preheader,
                                 postal_address="12 Example Street, Springfield 00000", strip_styles=strip_styles)
        return cache[key]

    return get


def _problems(m: Measurement) -> str:
    return "\n".join(m.problems())


@pytest.mark.browser
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_reader_meets_no_problem(measured: Measure, samples: dict[str, BuildResult], variant: str, width: int,
                                 scheme: str) -> None:
    """No sideways scroll, readable sizes and measure, tappable buttons, contrast, images, footer."""
    m = measured(variant, width, scheme)
    assert m.problems() == [], _problems(m)
    # The same facts spelled out, so a regression names the figure that moved.
    assert m.scroll_width <= m.viewport_width == width and m.content_right <= width
    assert m.content_width <= min(width, MAX_CONTENT_PX)
    assert m.min_font_px >= 16  # at 375 px too: readers with optic neuritis, no pinch-zoom needed
    assert m.line_heights and min(r for _, r in m.line_heights) >= 1.5 - 0.01
    assert m.justified == () and m.animations == 0
    assert min(m.heading_px) > max(m.paragraph_px)
    assert m.min_tap_px >= 44 and len(m.tap_targets) == len(samples[variant].issue.summaries)
    assert m.min_contrast >= MIN_CONTRAST
    assert all(m.required.values()) and not m.preheader_shown
    assert m.max_chars_per_line <= 70


@pytest.mark.browser
def test_images_load_fit_and_have_alt_text(measured: Measure) -> None:
    m = measured("ten", 375, "light")
    assert m.images, "the 10-summary sample should include the summary with a picture"
    for img in m.images:
        assert img.alt.strip() and img.loaded
        assert 0 <= img.left and img.right <= 375 and img.width > 300
    assert measured("ten", 600, "light").images[0].width == 552
    assert m.blocked_requests == ()


def _sample(m: Measurement, *, block: str, text: str = "") -> Any:
    return next(t for t in m.texts if t.block == block and t.text.startswith(text))


def _luminance(rgb: tuple[float, ...]) -> float:
    return (contrast_ratio(rgb, (0, 0, 0)) - 1) / 20  # relative luminance from the ratio against black


@pytest.mark.browser
@pytest.mark.parametrize("width", WIDTHS)
def test_dark_mode_really_turns_dark(measured: Measure, width: int) -> None:
    light, dark = measured("sample", width, "light"), measured("sample", width, "dark")
    for m, text_is_light in ((light, False), (dark, True)):
        for sample in (_sample(m, block="h1"), _sample(m, block="h2"), _sample(m, block="p", text="Relapses, when MS")):
            assert (_luminance(sample.color) > 0.5) is text_is_light, sample
            assert (_luminance(sample.background) < 0.05) is text_is_light, sample
    # premailer inlined the light colours; the dark rules must beat them (they carry !important)
    assert _sample(light, block="h1").color != _sample(dark, block="h1").color
    button_light = _sample(light, block="td", text="Read more")
    button_dark = _sample(dark, block="td", text="Read more")
    assert button_light.background != button_dark.background
    assert min(button_light.contrast, button_dark.contrast) >= MIN_CONTRAST


@pytest.mark.browser
@pytest.mark.parametrize("width", WIDTHS)
def test_layout_does_not_depend_on_style_elements(measured: Measure, width: int) -> None:
    """Some webmail clients drop <style>: inline styles alone must keep the layout."""
    m = measured("ten", width, "light", strip_styles=True)
    assert m.scroll_width <= width and m.content_right <= width, _problems(m)
    assert m.content_width <= MAX_CONTENT_PX
    assert m.problems() == [], _problems(m)


@pytest.mark.browser
def test_screenshots(browser: Any, samples: dict[str, BuildResult], tmp_path: Path) -> None:
    preview = samples["sample"].issue.build_dir / render.PREVIEW_FILE
    paths = take_screenshots(preview, tmp_path, browser=browser)
    assert [p.name for p in paths] == [f"email-{w}-{s}.png" for w in WIDTHS for s in SCHEMES]
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 400 * 1024
        width, height = struct.unpack(">II", data[16:24])
        assert width == int(path.name.split("-")[1]) and height > 1500  # full page
    stats = {p.name: _pixel_stats(browser, p) for p in paths}
    for name, (background, light_share, dark_share) in stats.items():
        if "dark" in name:  # light text on a dark page
            assert background < 0.2 and light_share > 0.01, (name, stats[name])
        else:
            assert background > 0.85 and dark_share > 0.01, (name, stats[name])


def _pixel_stats(browser: Any, png: Path) -> tuple[float, float, float]:
    """(brightness of the commonest colour, share of light pixels, share of dark pixels); the browser decodes.

    Brightness here is a weighted mean of the encoded sRGB channels (0..1), not WCAG luminance.
    """
    page = browser.new_page()
    try:
        uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
        return tuple(page.evaluate("""async (uri) => {
            const img = new Image(); img.src = uri; await img.decode();
            const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
            const g = c.getContext('2d'); g.drawImage(img, 0, 0);
            const d = g.getImageData(0, 0, c.width, c.height).data;
            const lum = (r, gr, b) => (0.2126 * r + 0.7152 * gr + 0.0722 * b) / 255;
            const counts = new Map(); let light = 0, dark = 0;
            for (let i = 0; i < d.length; i += 4) {
              const key = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2];
              counts.set(key, (counts.get(key) || 0) + 1);
              const l = lum(d[i], d[i + 1], d[i + 2]);
              if (l > 0.7) light++; else if (l < 0.2) dark++;
            }
            const top = [...counts.entries()].sort((a, b) => b[1] - a[1])[0][0];
            const n = d.length / 4;
            return [lum(top >> 16, (top >> 8) & 255, top & 255), light / n, dark / n];
        }""", uri))
    finally:
        page.close()


# --- What no browser is needed for: the HTML as the mail clients receive it -------------------


def test_html_size_leaves_room_before_gmail_clips(samples: dict[str, BuildResult]) -> None:
    sizes = {name: len(r.email.html.encode("utf-8")) for name, r in samples.items()}
    assert sizes["ten"] < SIZE_LIMIT, f"10 summaries make {sizes['ten'] / 1024:.1f} KB of HTML"
    assert sizes["sample"] < sizes["ten"]


def test_outlook_conditional_comments_survive_inlining(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[str] = []
    real = render.compile_mjml
    monkeypatch.setattr(render, "compile_mjml", lambda source: compiled.append(real(source)) or compiled[-1])
    issue = compose(settings, date=DATE)
    html = build(settings, issue.folder).email.html
    for marker in ("<!--[if mso", "<!--[if !mso", "<![endif]-->", "<!--[if lte mso 11]>"):
        assert html.count(marker) == compiled[0].count(marker) > 0, marker
    assert "<o:OfficeDocumentSettings>" in html and "<o:PixelsPerInch>96</o:PixelsPerInch>" in html


def test_preheader_is_hidden_and_padded(samples: dict[str, BuildResult]) -> None:
    result = samples["sample"]
    html = result.email.html
    hidden = re.search(r'<div class="preheader" aria-hidden="true" style="([^"]*)">([^<]*)</div>', html)
    assert hidden, "the preheader is the hidden first element of the body, hidden from screen readers too"
    style, content = hidden.groups()
    for rule in ("display:none", "mso-hide:all", "max-height:0", "overflow:hidden", "opacity:0"):
        assert rule in style.replace(" ", "")
    assert content.startswith(result.issue.preheader)
    padding = content[len(result.issue.preheader):]
    assert padding == "\u034f\u200c\u00a0" * (len(padding) // 3) and len(padding) // 3 >= 50
    assert html.index("<body") < html.index('class="preheader"') < html.index('class="brand"')


def test_contrast_ratio_follows_wcag() -> None:
    white, black = (255, 255, 255), (0, 0, 0)
    assert round(contrast_ratio(black, white), 2) == 21 == round(contrast_ratio(white, black), 2)
    assert round(contrast_ratio((0x77, 0x77, 0x77), white), 2) == 4.48  # the classic "#777 just fails AA"
    assert contrast_ratio((0, 0, 0, 0.0), white) == 1.0  # fully transparent text is invisible
