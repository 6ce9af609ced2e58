"""A side-by-side view for people: original, .ppan, JPEG and WebP at the same bytes, the
mask, and a zoom on the subject's border (``ppan compare``)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def at_most(image: Image.Image, fmt: str, budget: int) -> tuple[int, bytes]:
    """The highest quality (1-100) whose file fits in ``budget`` bytes (quality 1 if none does)."""
    low, high, best = 1, 100, (1, encoded(image, fmt, quality=1))
    while low <= high:
        quality = (low + high) // 2
        data = encoded(image, fmt, quality=quality)
        if len(data) <= budget:
            best, low = (quality, data), quality + 1
        else:
            high = quality - 1
    return best


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2)) if a.size else 0.0
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def border_point(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of a subject pixel on the border (the middle one in raster order)."""
    inner = mask.copy()
    inner[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    ys, xs = np.nonzero(mask & ~inner)
    if ys.size == 0:
        return mask.shape[1] // 2, mask.shape[0] // 2
    return int(xs[ys.size // 2]), int(ys[ys.size // 2])


def compare(image: Image.Image, mask: np.ndarray, **params) -> tuple[Image.Image, dict[str, Any]]:
    """(side-by-side sheet, numbers) for ``image`` saved as .ppan with ``mask`` and ``params``."""
    source = image if image.mode in ("L", "RGB") else image.convert("RGB")  # a JPEG keeps its coefficients
    data = encoded(source, "PPAN", mask=mask, **params)
    image = image.convert("RGB")
    views = {"original": image, "ppan": Image.open(io.BytesIO(data)).convert("RGB")}
    numbers = {"ppan": {"bytes": len(data)}}
    for fmt in ("JPEG", "WEBP"):
        quality, other = at_most(image, fmt, len(data))
        views[f"{fmt.lower()} q{quality}"] = Image.open(io.BytesIO(other)).convert("RGB")
        numbers[fmt.lower()] = {"bytes": len(other), "quality": quality}
    original = np.asarray(image)
    for name, view in list(views.items())[1:]:
        pixels, key = np.asarray(view), name.split()[0]
        numbers[key]["subject_psnr"] = round(psnr(pixels[mask], original[mask]), 2)
        numbers[key]["background_psnr"] = round(psnr(pixels[~mask], original[~mask]), 2)
    return _sheet(views, mask, numbers), numbers


def _labels(views: dict[str, Image.Image], mask: np.ndarray, numbers: dict[str, Any]) -> list[list[str]]:
    """The lines written above each panel of the first row."""
    labels = [["original", f"{views['original'].width}x{views['original'].height}"]]
    for name in list(views)[1:]:
        row = numbers[name.split()[0]]
        labels.append([name, f"{row['bytes']} bytes", f"subject {_decibels(row['subject_psnr'])}",
                       f"background {_decibels(row['background_psnr'])}"])
    return labels + [["mask (red: background)", f"subject {mask.mean():.1%}"]]


def _decibels(value: float) -> str:
    return "exact" if value == float("inf") else f"{value:.2f} dB"


def _sheet(views: dict[str, Image.Image], mask: np.ndarray, numbers: dict[str, Any]) -> Image.Image:
    """Row 1: every view and the mask overlay; row 2: the same views zoomed 4x on the border.
    Each panel is labelled in white on a dark band above it; the PSNR figures are there too."""
    first = views["original"]
    w, h = first.size
    red = Image.new("RGB", first.size, (255, 0, 0))
    overlay = Image.composite(first, Image.blend(first, red, 0.6), Image.fromarray(mask))
    x, y = border_point(mask)
    zw, zh = max(w // 4, 1), max(h // 4, 1)
    box = (min(max(x - zw // 2, 0), w - zw), min(max(y - zh // 2, 0), h - zh))
    box = (*box, box[0] + zw, box[1] + zh)
    top = list(zip(_labels(views, mask, numbers), [*views.values(), overlay]))
    bottom = [([f"{name}, 4x"], view.crop(box).resize((zw * 4, zh * 4), Image.NEAREST))
              for name, view in views.items()]
    font = ImageFont.load_default(size=max(10, min(w // 24, 32)))
    line = font.getbbox("Hg")[3] + 2
    bands = [line * max(len(lines) for lines, _ in row) + 6 for row in (top, bottom)]
    sheet = Image.new("RGB", (w * len(top), bands[0] + h + bands[1] + zh * 4), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    y0 = 0
    for band, panels, height in zip(bands, (top, bottom), (h, zh * 4)):
        for i, (lines, panel) in enumerate(panels):
            draw.multiline_text((i * w + 4, y0 + 3), "\n".join(lines), fill="white", font=font, spacing=2)
            sheet.paste(panel, (i * w, y0 + band))
        y0 += band + height
    return sheet
