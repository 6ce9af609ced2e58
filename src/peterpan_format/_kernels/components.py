"""Connected components, hole filling and label dilation for subject masks.

Used by ``peterpan_format.segment.postprocess``. Kernels take C-contiguous uint8 /
int32 arrays (see ``as_u8``) and compile to one signature each.
"""

import numba
import numpy as np

from . import as_u8


@numba.njit(cache=True, nogil=True)
def _label(mask, conn8):
    h, w = mask.shape
    labels = np.zeros((h, w), np.int32)
    stack = np.empty(h * w, np.int64)
    n = 0
    for y0 in range(h):
        for x0 in range(w):
            if mask[y0, x0] == 0 or labels[y0, x0] != 0:
                continue
            n += 1
            labels[y0, x0] = n
            sp = 0
            stack[sp] = y0 * w + x0
            sp += 1
            while sp > 0:
                sp -= 1
                p = stack[sp]
                y = p // w
                x = p - y * w
                for dy in range(-1, 2):
                    yy = y + dy
                    if yy < 0 or yy >= h:
                        continue
                    for dx in range(-1, 2):
                        if dy == 0 and dx == 0:
                            continue
                        if not conn8 and dy != 0 and dx != 0:
                            continue
                        xx = x + dx
                        if xx < 0 or xx >= w:
                            continue
                        if mask[yy, xx] != 0 and labels[yy, xx] == 0:
                            labels[yy, xx] = n
                            stack[sp] = yy * w + xx
                            sp += 1
    return labels, n


def label(mask, connectivity: int = 8):
    """Label the non-zero pixels of a 2-D mask: ``(labels int32, count)``; 0 = not set."""
    if connectivity not in (4, 8):
        raise ValueError("connectivity must be 4 or 8")
    m = as_u8(np.asarray(mask) != 0, 2, "mask")
    labels, n = _label(m, connectivity == 8)
    return labels, int(n)


@numba.njit(cache=True, nogil=True)
def _dilate_labels(labels, radius):
    """Grow every label by a disc of ``radius`` into 0 pixels; the lowest label wins."""
    h, w = labels.shape
    out = labels.copy()
    r2 = radius * radius
    for y in range(h):
        for x in range(w):
            lab = labels[y, x]
            if lab == 0:
                continue
            # only boundary pixels (a 4-neighbour differs) need stamping
            edge = False
            if y == 0 or labels[y - 1, x] != lab:
                edge = True
            elif y == h - 1 or labels[y + 1, x] != lab:
                edge = True
            elif x == 0 or labels[y, x - 1] != lab:
                edge = True
            elif x == w - 1 or labels[y, x + 1] != lab:
                edge = True
            if not edge:
                continue
            for dy in range(-radius, radius + 1):
                yy = y + dy
                if yy < 0 or yy >= h:
                    continue
                for dx in range(-radius, radius + 1):
                    if dy * dy + dx * dx > r2:
                        continue
                    xx = x + dx
                    if xx < 0 or xx >= w:
                        continue
                    if labels[yy, xx] == 0:
                        cur = out[yy, xx]
                        if cur == 0 or cur > lab:
                            out[yy, xx] = lab
    return out


def dilate_labels(labels, radius: int):
    """Dilate a label image (0 = empty) by a Euclidean disc; ties go to the lower label."""
    lab = np.ascontiguousarray(labels, dtype=np.int32)
    if lab.ndim != 2:
        raise ValueError("labels must be 2-D")
    if radius <= 0:
        return lab.copy()
    return _dilate_labels(lab, int(radius))
