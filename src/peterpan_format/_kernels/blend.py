"""Compositing (spec §8.2) and feathering of the background next to the subject (§8.3).

Both work in place on the upsampled background U, so that the decoder holds no second
full-size image: ``paste`` writes the subject values into it, then ``feather`` pulls the
background near the subject towards them, computing U at a subject pixel (overwritten
by the paste) from the background layer B itself (``resample.upsampled_at``). The
feathering keeps its distances in the mask (which it overwrites) and gives exactly the
spec's result while doing less work:

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

from . import as_u8, threads
from .resample import bicubic_weights, upsampled_at

MAX_RADIUS = 64  # keeps R + 4 within uint8 distances and offsets within int8


@numba.njit(cache=True, nogil=True)
def _paste(out, values, bx0, by0, mask):
    for y in range(values.shape[0]):
        for x in range(values.shape[1]):
            if mask[by0 + y, bx0 + x]:
                for c in range(out.shape[2]):
                    out[by0 + y, bx0 + x, c] = values[y, x, c]


@numba.njit(cache=True, nogil=True)
def _feather(out, mask, wy, wx, sy, sx, radius, small, s, offsets, weights):
    """In place: pull background pixels of ``out`` (= U there) within the radius towards
    the subject pixels (already pasted), all inside the window at (wx, wy) of ``sy``'s
    size; ``sy`` and ``sx`` (int8, zeros) receive each pixel's offset to its nearest
    subject pixel."""
    channels = out.shape[2]
    h, w = sy.shape
    big_r = 3 * (radius + 1)
    dist = mask[wy : wy + h, wx : wx + w]
    for y in range(h):
        for x in range(w):
            dist[y, x] = 0 if dist[y, x] else big_r
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
                e = np.int64(out[qy, qx, c]) - upsampled_at(small, s, offsets, weights, qx, qy, c)
                v = np.int64(out[py, px, c]) + (2 * e * wgt + big_r) // (2 * big_r)
                out[py, px, c] = min(max(v, 0), 255)


def _image(out) -> None:
    if not (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.ndim == 3 and out.flags.c_contiguous
            and out.flags.writeable):
        raise ValueError("out must be a writeable C-contiguous uint8[H, W, C] array")


def paste(out, values, box, mask) -> None:
    """§8.2 in place: the subject values (uint8[h, w, C], the box (x0, y0, w, h)) go into
    ``out`` (uint8[H, W, C]) where the uint8[H, W] ``mask`` is nonzero within the box."""
    _image(out)
    values = as_u8(values, 3, "values")
    mask = as_u8(mask, 2, "mask")
    x0, y0, w, h = (int(v) for v in box)
    if mask.shape != out.shape[:2] or values.shape != (h, w, out.shape[2]):
        raise ValueError("mask must match out, and values the box and out's channels")
    if x0 < 0 or y0 < 0 or x0 + w > out.shape[1] or y0 + h > out.shape[0]:
        raise ValueError("box must lie in the image")

    def band(rows):
        _paste(out, values[rows[0] : rows[1]], x0, y0 + rows[0], mask)

    threads.run(band, threads.bands(h, h * w))


def feather(out, mask, box, radius: int, small, scale: int) -> None:
    """§8.3 in place on ``out`` (uint8[H, W, C]): U at background pixels, the subject pasted.

    ``mask`` (uint8[H, W], nonzero = subject, every subject pixel inside ``box`` =
    (x0, y0, w, h)) is overwritten with distances; ``radius`` is F (0 .. MAX_RADIUS; 0
    does nothing); ``small`` (uint8[bh, bw, C]) and ``scale`` are the background B and s,
    from which U is computed at subject pixels.
    """
    radius = int(radius)
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(f"radius must be in 0..{MAX_RADIUS}")
    _image(out)
    if not (isinstance(mask, np.ndarray) and mask.dtype == np.uint8 and mask.shape == out.shape[:2]
            and mask.flags.c_contiguous and mask.flags.writeable):
        raise ValueError("mask must be a writeable C-contiguous uint8[H, W] array of out's size")
    small = as_u8(small, 3, "small")
    x0, y0, w, h = (int(v) for v in box)
    scale = int(scale)
    if small.shape != (-(-out.shape[0] // scale), -(-out.shape[1] // scale), out.shape[2]):
        raise ValueError("small must be the background of out at this scale")
    if radius and w and h:
        offsets, weights = bicubic_weights(scale)
        # the box grown by the radius, within the image
        wy, wx = max(y0 - radius, 0), max(x0 - radius, 0)
        window = (min(y0 + h + radius, out.shape[0]) - wy, min(x0 + w + radius, out.shape[1]) - wx)
        _feather(out, mask, wy, wx, np.zeros(window, np.int8), np.zeros(window, np.int8), radius, small, scale,
                 offsets, weights)
