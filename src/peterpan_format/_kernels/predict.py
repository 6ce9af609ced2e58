"""MED prediction of the subject pixels: SUBJ coding 2 before Brotli (spec §6.2)."""

import numba
import numpy as np

from . import as_box, as_u8, count_set

ERR_LENGTH = -1
ERR_CHANNELS = -2

MED_ERRORS = {
    ERR_LENGTH: "subject residuals are not channels x subject-pixel-count bytes",
    ERR_CHANNELS: "channels must be 1, 3 or 4",
}


@numba.njit(cache=True, nogil=True)
def _predict(a, b, c, x, y):
    """The §6.2 prediction from the left (a), upper (b) and upper-left (c) values."""
    if y == 0:
        return a  # the caller starts each row with a = 0
    if x == 0:
        return b
    return max(min(a, b), min(max(a, b), a + b - c))  # MED is the median of a, b, a + b - c


@numba.njit(cache=True, nogil=True)
def _med_encode(pixels, mask):
    """Zigzag MED residuals of the subject pixels, plane-major."""
    h, w, channels = pixels.shape
    planes = np.empty((channels, h, w), np.uint8)
    for y in range(h):
        for x in range(w):
            if channels == 1:
                planes[0, y, x] = pixels[y, x, 0]
            else:
                g = np.int64(pixels[y, x, 1])
                planes[0, y, x] = g
                planes[1, y, x] = (pixels[y, x, 0] - g) & 255
                planes[2, y, x] = (pixels[y, x, 2] - g) & 255
                if channels == 4:
                    planes[3, y, x] = pixels[y, x, 3]
    res = np.empty(channels * count_set(mask), np.uint8)
    k = 0
    for p in range(channels):
        plane = planes[p]
        for y in range(h):
            row = plane[y]
            above = plane[y - 1] if y > 0 else row
            a = c = np.int64(0)
            for x in range(w):
                b = np.int64(above[x])
                pred = _predict(a, b, c, x, y)
                if mask[y, x]:
                    a = np.int64(row[x])
                    e = (a - pred) & 255
                    res[k] = 2 * e if e < 128 else 511 - 2 * e
                    k += 1
                else:  # a background pixel takes its prediction
                    a = pred
                    row[x] = a
                c = b
    return res


@numba.njit(cache=True, nogil=True)
def _med_decode(residuals, mask, channels):
    """Subject values uint8[h, w, C] from plane-major zigzag residuals, and a status.

    All planes are reconstructed together, row by row: plane p's k-th residual is
    residuals[p * n + k], n the subject pixel count, so only two rows are held per plane.
    """
    h, w = mask.shape
    if channels != 1 and channels != 3 and channels != 4:
        return np.zeros((h, w, 0), np.uint8), ERR_CHANNELS
    n = count_set(mask)
    if residuals.size != channels * n:
        return np.zeros((h, w, channels), np.uint8), ERR_LENGTH
    rows = np.zeros((channels, 2, w), np.int64)
    out = np.empty((h, w, channels), np.uint8)
    k = 0
    for y in range(h):
        row = rows[:, y & 1]
        above = rows[:, (y & 1) ^ 1] if y > 0 else row
        k0 = k
        for p in range(channels):
            k = k0
            a = c = np.int64(0)
            for x in range(w):
                b = above[p, x]
                a = _predict(a, b, c, x, y)  # a background pixel takes its prediction
                if mask[y, x]:
                    z = np.int64(residuals[p * n + k])
                    a = (a + ((z >> 1) ^ -(z & 1))) & 255
                    k += 1
                row[p, x] = a
                c = b
        for x in range(w):
            if channels == 1:
                out[y, x, 0] = row[0, x]
            else:
                g = row[0, x]
                out[y, x, 0] = (row[1, x] + g) & 255
                out[y, x, 1] = g
                out[y, x, 2] = (row[2, x] + g) & 255
                if channels == 4:
                    out[y, x, 3] = row[3, x]
    return out, 0


def med_encode(pixels, mask) -> np.ndarray:
    """Residual bytes ``r`` of SUBJ coding 2 for a box crop uint8[h, w, C] (C = 1, 3, 4).

    ``mask`` is the uint8[h, w] mask crop (nonzero = subject); the result has C x n bytes.
    """
    return _med_encode(*as_box(pixels, mask))


def med_decode(residuals, mask, channels: int) -> tuple[np.ndarray, int]:
    """Decode SUBJ coding 2 residuals into (uint8[h, w, channels] values, status).

    Status 0 means success; a negative status is a key of ``MED_ERRORS``. Values at
    background pixels of the box are unspecified. Any input bytes are safe.
    """
    out, status = _med_decode(as_u8(residuals, 1, "residuals"), as_u8(mask, 2, "mask"), int(channels))
    return out, int(status)
