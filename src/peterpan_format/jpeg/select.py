"""Which coefficient blocks the subject pixels depend on (spec/FORMAT.md §6.4.3).

A component with upsampling ratio (rh, rv) = (hmax / h, vmax / v) gives output pixel
(x, y) from the samples

- columns floor((x - 1) / 2) and floor((x + 1) / 2) (clamped) when rh = 2 (the fancy
  filter's two taps; plain replication reads a subset), else floor(x / rh);
- rows likewise with rv and y.

A block is kept if it holds a sample read by a subject pixel: for a full-size component
that is any block touching the subject. The rule depends only on the mask and the
frame's layout, so the payload does not store it.
"""

from __future__ import annotations

import numpy as np

from ..masking import box_of
from .parser import Component


def _blocks(m: np.ndarray, ratio: int, size: int, axis: int) -> np.ndarray:
    """Along ``axis`` (of ``size`` samples): block k, samples 8k .. 8k + 7, is marked if
    a pixel != 0 reads one of them (see module doc): pixels 8rk .. 8r(k + 1) - 1 for a
    ratio r, and with r = 2 also the pixels 16k - 1 and 16k + 16 (the filter's taps)."""
    m = np.moveaxis(m, axis, 0)
    span, nb = 8 * ratio, -(-size // 8)
    n = min(m.shape[0], size if ratio == 1 else ratio * size)
    pad = np.zeros((nb * span + 2,) + m.shape[1:], bool)  # pixel p at p + 1
    np.not_equal(m[:n], 0, out=pad[1 : n + 1])
    out = pad[1 : nb * span + 1].reshape((nb, span) + m.shape[1:]).any(axis=1)
    if ratio == 2:
        out |= pad[0 : nb * span : span]  # pixel 16k - 1
        out |= pad[span + 1 :: span][:nb]  # pixel 16k + 16
    return np.moveaxis(out, 0, axis)


def kept_blocks(mask: np.ndarray, comps: list[Component]) -> list[np.ndarray]:
    """Per component, bool[nby, nbx]: the blocks needed for the pixels where mask != 0.

    Only a window around the mask's box is examined: the box widened to whole MCUs (with
    at least one pixel more on each side, all that the triangle filter reaches), so that
    the window's edges are block edges of every component.
    """
    m = np.asarray(mask)
    height, width = m.shape
    hmax = max(c.h for c in comps)
    vmax = max(c.v for c in comps)
    out = [np.zeros((c.nby, c.nbx), bool) for c in comps]
    bx, by, bw, bh = box_of(m)
    if bw == 0:
        return out
    x0, x1 = _window(bx, bx + bw, 8 * hmax, width)
    y0, y1 = _window(by, by + bh, 8 * vmax, height)
    sub = m[y0:y1, x0:x1]
    for c, kept in zip(comps, out):
        rh, rv = hmax // c.h, vmax // c.v
        sx0, sy0 = x0 // rh, y0 // rv  # multiples of 8
        dw = (c.dw if x1 == width else x1 // rh) - sx0
        dh = (c.dh if y1 == height else y1 // rv) - sy0
        need = _blocks(_blocks(sub, rv, dh, 0), rh, dw, 1)
        kept[sy0 // 8 : sy0 // 8 + need.shape[0], sx0 // 8 : sx0 // 8 + need.shape[1]] = need
    return out


def _window(start: int, stop: int, unit: int, size: int) -> tuple[int, int]:
    """``start .. stop`` widened by a pixel each side, then out to multiples of ``unit``
    (or the image's edge)."""
    return max(start - 1, 0) // unit * unit, min(-(-(stop + 1) // unit) * unit, size)
