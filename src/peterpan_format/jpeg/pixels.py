"""From quantised coefficients to the pixels libjpeg-turbo (Pillow) decodes."""

from __future__ import annotations

import numpy as np

from .._kernels import jpeg_idct as ki
from .._kernels import threads
from .parser import Component


def ratios(comps: list[Component]) -> list[tuple[int, int]]:
    """Upsampling ratio (rh, rv) of each component: hmax / h, vmax / v."""
    hmax = max(c.h for c in comps)
    vmax = max(c.v for c in comps)
    return [(hmax // c.h, vmax // c.v) for c in comps]


def sample_range(start: int, stop: int, ratio: int, size: int) -> tuple[int, int]:
    """First and last sample (inclusive, clamped to 0..size-1) read for pixels start..stop-1."""
    lo = min(max((start - 1) // ratio, 0), size - 1)
    hi = min(max(stop // ratio, 0), size - 1)
    return lo, hi


def _idct(coef, index, q, view, by0: int, bx0: int) -> None:
    """ki.idct_blocks of a component's window, a band of its block rows per CPU."""

    def band(rows):
        ki.idct_blocks(coef, index, q, view[8 * rows[0] : 8 * rows[1]], by0 + rows[0], bx0)

    threads.run(band, threads.bands(view.shape[0] // 8, view.size))


def render(
    comps: list[Component],
    colour: str,
    qtables: np.ndarray,
    blocks: list[tuple[np.ndarray, np.ndarray]],
    box: tuple[int, int, int, int],
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Pixels uint8[h, w, C] of ``box`` = (x0, y0, w, h), exact where ``mask`` is set.

    ``blocks`` yields, for each component c in turn, (coef int16[k, 64], index int32[nby,
    nbx]): its blocks available (index -1 = missing). Pixels where ``mask`` is 0 are left 0;
    every pixel is computed when ``mask`` is None.
    """
    x0, y0, w, h = box
    rs = ratios(comps)
    infos, windows, total = [], [], 0
    for c, (rh, rv) in zip(comps, rs):
        lx, hx = sample_range(x0, x0 + w, rh, c.dw)
        ly, hy = sample_range(y0, y0 + h, rv, c.dh)
        bx0, bx1, by0, by1 = lx // 8, hx // 8 + 1, ly // 8, hy // 8 + 1
        ph, pw = 8 * (by1 - by0), 8 * (bx1 - bx0)
        windows.append((total, ph, pw, by0, bx0))
        fancy = int(rh == 2 and c.dw > 2)
        infos.append([total, pw, 8 * bx0, 8 * by0, c.dw, c.dh, rh, rv, fancy])
        total += ph * pw
    plane = np.zeros(total, np.uint8)
    blocks = iter(blocks)
    for (off, ph, pw, by0, bx0), q in zip(windows, qtables):
        coef, index = next(blocks)
        _idct(coef, index, q, plane[off : off + ph * pw].reshape(ph, pw), by0, bx0)
        del coef, index  # each component's coefficients go before the next come
    if next(blocks, None) is not None:  # ends a generator, which drops what it held
        raise ValueError("more blocks than components")
    out = np.zeros((h, w, len(comps)), np.uint8)
    sel = np.ones((h, w), np.uint8) if mask is None else np.ascontiguousarray(mask, dtype=np.uint8)
    info, ycbcr = np.array(infos, np.int64), int(colour == "ycbcr")

    def band(rows):  # a band of the box's rows per CPU
        a, b = rows
        return ki.upsample_convert(out[a:b], sel[a:b], plane, info, x0, y0 + a, ycbcr)

    if any(threads.run(band, threads.bands(h, h * w))):
        raise RuntimeError("internal error: sample window too small")
    return out
