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
    """Per component, bool[nby, nbx]: the blocks needed for the pixels where mask != 0."""
    m = np.asarray(mask) != 0
    hmax = max(c.h for c in comps)
    vmax = max(c.v for c in comps)
    out = []
    for c in comps:
        need = _reduce(_reduce(m, hmax // c.h, c.dw, 1), vmax // c.v, c.dh, 0)
        pad = np.zeros((8 * c.nby, 8 * c.nbx), bool)
        pad[: c.dh, : c.dw] = need
        out.append(pad.reshape(c.nby, 8, c.nbx, 8).any(axis=(1, 3)))
    return out
