"""Feathering of the background next to the subject (spec §8.3).

The kernel gives exactly the spec's result while doing less work:

- Only the subject box grown by F pixels (clipped to the image) is processed. A chamfer
  step costs at least 3 and moves at most one pixel each way, so D(p) >= 3 * (Chebyshev
  distance to the nearest subject pixel) and every pixel outside that window has
  D >= 3 (F + 1) = R in the full-image passes.
- Distances are capped: a D >= R is stored as R. A neighbour q with D(q) >= R can never
  give a p a value below R, nor tie with one, so for every pixel with D < R the passes
  choose the same minimum and, under the strict ``<`` and the neighbour order, the same
  source as the uncapped full-image passes; pixels with D >= R are never blended.
- The source is kept as an offset from the pixel (|offset| <= F while D < R) and the
  blend of a pixel happens as soon as the backward pass has finalised it.
"""

import numba
import numpy as np

from . import as_u8

MAX_RADIUS = 64  # keeps R + 4 within uint8 distances and offsets within int8


@numba.njit(cache=True, nogil=True)
def _feather(out, up, mask, radius):
    """In place: pull background pixels of ``out`` within the radius towards the subject."""
    height, width, channels = out.shape
    y0, y1, x0, x1 = height, -1, width, -1
    for y in range(height):
        row = mask[y]
        a = 0
        while a < width and row[a] == 0:
            a += 1
        if a == width:
            continue
        b = width - 1
        while row[b] == 0:
            b -= 1
        y0 = min(y0, y)
        y1 = y
        x0 = min(x0, a)
        x1 = max(x1, b)
    if y1 < 0:
        return
    wy = max(y0 - radius, 0)
    wx = max(x0 - radius, 0)
    h = min(y1 + radius + 1, height) - wy
    w = min(x1 + radius + 1, width) - wx
    big_r = 3 * (radius + 1)
    dist = np.empty((h, w), np.uint8)
    sy = np.zeros((h, w), np.int8)
    sx = np.zeros((h, w), np.int8)
    for y in range(h):
        for x in range(w):
            dist[y, x] = 0 if mask[wy + y, wx + x] else big_r
    for y in range(h):
        for x in range(w):
            best = np.int64(dist[y, x])
            if best == 0:
                continue
            by = bx = 0
            if y > 0:
                if x > 0 and dist[y - 1, x - 1] + 4 < best:
                    best = dist[y - 1, x - 1] + 4
                    by, bx = sy[y - 1, x - 1] - 1, sx[y - 1, x - 1] - 1
                if dist[y - 1, x] + 3 < best:
                    best = dist[y - 1, x] + 3
                    by, bx = sy[y - 1, x] - 1, sx[y - 1, x]
                if x + 1 < w and dist[y - 1, x + 1] + 4 < best:
                    best = dist[y - 1, x + 1] + 4
                    by, bx = sy[y - 1, x + 1] - 1, sx[y - 1, x + 1] + 1
            if x > 0 and dist[y, x - 1] + 3 < best:
                best = dist[y, x - 1] + 3
                by, bx = sy[y, x - 1], sx[y, x - 1] - 1
            if best < dist[y, x]:
                dist[y, x] = best
                sy[y, x] = by
                sx[y, x] = bx
    for y in range(h - 1, -1, -1):
        for x in range(w - 1, -1, -1):
            best = np.int64(dist[y, x])
            if best == 0:
                continue
            by, bx = sy[y, x], sx[y, x]
            if y + 1 < h:
                if x + 1 < w and dist[y + 1, x + 1] + 4 < best:
                    best = dist[y + 1, x + 1] + 4
                    by, bx = sy[y + 1, x + 1] + 1, sx[y + 1, x + 1] + 1
                if dist[y + 1, x] + 3 < best:
                    best = dist[y + 1, x] + 3
                    by, bx = sy[y + 1, x] + 1, sx[y + 1, x]
                if x > 0 and dist[y + 1, x - 1] + 4 < best:
                    best = dist[y + 1, x - 1] + 4
                    by, bx = sy[y + 1, x - 1] + 1, sx[y + 1, x - 1] - 1
            if x + 1 < w and dist[y, x + 1] + 3 < best:
                best = dist[y, x + 1] + 3
                by, bx = sy[y, x + 1], sx[y, x + 1] + 1
            if best >= big_r:
                continue
            dist[y, x] = best
            sy[y, x] = by
            sx[y, x] = bx
            py, px = wy + y, wx + x
            qy, qx = py + by, px + bx
            wgt = big_r - best
            for c in range(channels):
                e = np.int64(out[qy, qx, c]) - np.int64(up[qy, qx, c])
                v = np.int64(up[py, px, c]) + (2 * e * wgt + big_r) // (2 * big_r)
                out[py, px, c] = min(max(v, 0), 255)


def feather(out, up, mask, radius: int) -> None:
    """Feather ``out`` (uint8[H, W, C], the composite) in place as in spec §8.3.

    ``up`` is the upsampled background U, ``mask`` the uint8[H, W] mask (nonzero =
    subject) and ``radius`` the feather radius F (0 .. MAX_RADIUS; 0 does nothing).
    Subject pixels never change.
    """
    radius = int(radius)
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(f"radius must be in 0..{MAX_RADIUS}")
    if not (
        isinstance(out, np.ndarray)
        and out.dtype == np.uint8
        and out.ndim == 3
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        raise ValueError("out must be a writeable C-contiguous uint8[H, W, C] array")
    up = as_u8(up, 3, "up")
    mask = as_u8(mask, 2, "mask")
    if up.shape != out.shape or mask.shape != out.shape[:2]:
        raise ValueError("out, up and mask must have the same height and width")
    if radius:
        _feather(out, up, mask, radius)
