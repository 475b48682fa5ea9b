"""Colours for the browser checks: computed CSS colours, WCAG contrast, and a placeholder picture."""

from __future__ import annotations

import re
import struct
import zlib
from functools import lru_cache

__all__ = ["hex_colour", "luminance", "contrast_ratio", "parse_colour", "over", "placeholder_png"]


def hex_colour(rgb: tuple[float, ...]) -> str:
    """'#rrggbb' of an sRGB colour (0-255 channels), for messages."""
    return "#" + "".join(f"{round(c):02x}" for c in rgb[:3])


def luminance(rgb: tuple[float, ...]) -> float:
    """WCAG 2 relative luminance of an sRGB colour (0-255 channels)."""
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: tuple[float, ...], background: tuple[float, ...]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours (0-255 channels); a translucent foreground is blended first."""
    fg = foreground[:3]
    if len(foreground) > 3 and foreground[3] < 1:
        a = foreground[3]
        fg = tuple(a * f + (1 - a) * b for f, b in zip(foreground[:3], background[:3]))
    hi, lo = sorted((luminance(fg), luminance(background)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


_COLOR = re.compile(r"rgba?\(\s*([\d.]+)[,\s]+([\d.]+)[,\s]+([\d.]+)(?:\s*[,/]\s*([\d.]+%?))?\s*\)")


def parse_colour(css: str) -> tuple[float, float, float, float]:
    """A computed CSS colour ('rgb(…)', 'rgba(…)') -> (r, g, b, alpha)."""
    m = _COLOR.fullmatch(css.strip())
    if not m:
        raise ValueError(f"unexpected computed colour {css!r}")
    alpha = m.group(4)
    a = 1.0 if alpha is None else (float(alpha[:-1]) / 100 if alpha.endswith("%") else float(alpha))
    return float(m.group(1)), float(m.group(2)), float(m.group(3)), a


def over(top: tuple[float, ...], bottom: tuple[float, ...]) -> tuple[float, float, float]:
    """A translucent colour composited over an opaque one."""
    a = top[3] if len(top) > 3 else 1.0
    return tuple(a * t + (1 - a) * b for t, b in zip(top[:3], bottom[:3]))  # type: ignore[return-value]


def _png(width: int, height: int) -> bytes:
    """A muted placeholder picture (sky band over a hill) as PNG bytes, without an imaging library."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            hill = y > height * 0.62 + (height * 0.12) * ((x / width - 0.5) ** 2 * 4 - 1)
            rows += bytes((94, 140, 120) if hill else (182, 208, 214))
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
            + chunk(b"IEND", b""))


@lru_cache(maxsize=1)
def placeholder_png() -> bytes:
    """What the browser checks show in place of every network image (none is fetched)."""
    return _png(1104, 552)
