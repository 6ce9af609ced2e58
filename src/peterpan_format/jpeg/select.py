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


def _reduce(m: np.ndarray, ratio: int, size: int, axis: int) -> np.ndarray:
    """Along ``axis``: sample i is marked if a marked pixel reads it (see module doc)."""
    m = np.moveaxis(m, axis, -1)
    n = m.shape[-1]
    if ratio == 1:
        out = m[..., :size]
    elif ratio == 2:
        # pixels 2i-1, 2i, 2i+1, 2i+2 read sample i
        pad = np.zeros(m.shape[:-1] + (2 * size + 3,), bool)
        pad[..., 1 : 1 + n] = m
        pairs = pad[..., 0 : 2 * size + 2 : 2] | pad[..., 1 : 2 * size + 2 : 2]  # 2j-1 | 2j
        out = pairs[..., :size] | pairs[..., 1 : size + 1]
    else:
        pad = np.zeros(m.shape[:-1] + (ratio * size,), bool)
        k = min(n, ratio * size)
        pad[..., :k] = m[..., :k]
        out = pad.reshape(m.shape[:-1] + (size, ratio)).any(axis=-1)
    return np.moveaxis(out, -1, axis)


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
    sub = m[y0:y1, x0:x1] != 0
    for c, kept in zip(comps, out):
        rh, rv = hmax // c.h, vmax // c.v
        sx0, sy0 = x0 // rh, y0 // rv  # multiples of 8
        dw = (c.dw if x1 == width else x1 // rh) - sx0
        dh = (c.dh if y1 == height else y1 // rv) - sy0
        need = _reduce(_reduce(sub, rh, dw, 1), rv, dh, 0)
        nbx, nby = -(-dw // 8), -(-dh // 8)
        pad = np.zeros((8 * nby, 8 * nbx), bool)
        pad[:dh, :dw] = need
        kept[sy0 // 8 : sy0 // 8 + nby, sx0 // 8 : sx0 // 8 + nbx] = pad.reshape(nby, 8, nbx, 8).any(axis=(1, 3))
    return out


def _window(start: int, stop: int, unit: int, size: int) -> tuple[int, int]:
    """``start .. stop`` widened by a pixel each side, then out to multiples of ``unit``
    (or the image's edge)."""
    return max(start - 1, 0) // unit * unit, min(-(-(stop + 1) // unit) * unit, size)
