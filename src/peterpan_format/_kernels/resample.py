"""Area downsampling (encoder, spec §12) and fixed-point bicubic upsampling (spec §8.1)."""

import functools
import math
from fractions import Fraction

import numba
import numpy as np

from . import as_u8, threads


@numba.njit(cache=True, nogil=True)
def _area_downsample(img, mask, s):
    """Mean of each s x s block's in-image background pixels (mask 0), rounded half up.

    A block without background pixels takes the mean of all its pixels, so the result
    stays a complete thumbnail while the subject's colours do not bleed into the
    background next to it (spec §12).
    """
    height, width, channels = img.shape
    bh = (height + s - 1) // s
    bw = (width + s - 1) // s
    out = np.empty((bh, bw, channels), np.uint8)
    every = np.empty((bw, channels), np.int64)  # sums over all pixels of the block
    back = np.empty((bw, channels), np.int64)  # sums over its background pixels
    count = np.empty(bw, np.int64)
    for by in range(bh):
        every[:] = 0
        back[:] = 0
        count[:] = 0
        y1 = min(by * s + s, height)
        for y in range(by * s, y1):
            row = img[y]
            for bx in range(bw):
                for x in range(bx * s, min(bx * s + s, width)):
                    is_back = mask[y, x] == 0
                    count[bx] += is_back
                    for c in range(channels):
                        every[bx, c] += row[x, c]
                        if is_back:
                            back[bx, c] += row[x, c]
        rows = y1 - by * s
        for bx in range(bw):
            n = count[bx]
            sums = back
            if n == 0:
                n = rows * (min(bx * s + s, width) - bx * s)
                sums = every
            for c in range(channels):
                out[by, bx, c] = (sums[bx, c] + n // 2) // n
    return out


@numba.njit(cache=True, nogil=True)
def _bicubic_upsample(src, channels, s, out, y0, offsets, weights, tap, wx, ring, held):
    """Separable bicubic upsampling of ``src`` (uint8[bh, bw * C]) into ``out``
    (uint8[rows, width * C]), the image's rows y0 .. y0 + rows - 1 (§8.1).

    Rows of the horizontal pass are computed on demand into ``ring`` (int32[4, width * C],
    exact horizontal sums, |T| < 2^21; ``held`` int64[4] = -1 says which source row each
    holds): the vertical taps of successive output rows move down monotonically, so each
    source row is filtered once and the intermediate image is never held whole. ``tap`` and
    ``wx`` (int32[width * C, 4]) receive each output element's source elements and weights.
    (Every array comes from the caller: allocating in a kernel costs compile time.)
    """
    bh = src.shape[0]
    bw = src.shape[1] // channels
    rows, n = out.shape
    width = n // channels
    for x in range(width):
        k = x // s
        j = x - k * s
        for t in range(4):
            sx = min(max(k + offsets[j] + t, 0), bw - 1)
            for c in range(channels):
                tap[x * channels + c, t] = sx * channels + c
                wx[x * channels + c, t] = weights[j, t]
    for y in range(y0, y0 + rows):
        k = y // s
        j = y - k * s
        for t in range(4):
            r = min(max(k + offsets[j] + t, 0), bh - 1)
            if held[r % 4] != r:
                held[r % 4] = r
                row = src[r]
                trow = ring[r % 4]
                for e in range(n):
                    trow[e] = (
                        wx[e, 0] * np.int32(row[tap[e, 0]])
                        + wx[e, 1] * np.int32(row[tap[e, 1]])
                        + wx[e, 2] * np.int32(row[tap[e, 2]])
                        + wx[e, 3] * np.int32(row[tap[e, 3]])
                    )
        o = offsets[j]
        t0 = ring[min(max(k + o, 0), bh - 1) % 4]
        t1 = ring[min(max(k + o + 1, 0), bh - 1) % 4]
        t2 = ring[min(max(k + o + 2, 0), bh - 1) % 4]
        t3 = ring[min(max(k + o + 3, 0), bh - 1) % 4]
        w0 = np.int64(weights[j, 0])
        w1 = np.int64(weights[j, 1])
        w2 = np.int64(weights[j, 2])
        w3 = np.int64(weights[j, 3])
        orow = out[y - y0]
        for e in range(n):
            a = w0 * t0[e] + w1 * t1[e] + w2 * t2[e] + w3 * t3[e]
            orow[e] = min(max((a + (1 << 23)) >> 24, 0), 255)


@numba.njit(cache=True, nogil=True)
def upsampled_at(small, s, offsets, weights, x, y, c):
    """U(x, y) of channel c (§8.1) computed from B = ``small`` alone, exactly as the two
    passes of _bicubic_upsample compute it (the horizontal sums are exact integers)."""
    bh, bw = small.shape[0], small.shape[1]
    kx = x // s
    jx = x - kx * s
    ky = y // s
    jy = y - ky * s
    a = np.int64(0)
    for tv in range(4):
        r = min(max(ky + offsets[jy] + tv, 0), bh - 1)
        t = np.int64(0)
        for th in range(4):
            col = min(max(kx + offsets[jx] + th, 0), bw - 1)
            t += weights[jx, th] * np.int64(small[r, col, c])
        a += weights[jy, tv] * t
    return min(max((a + (1 << 23)) >> 24, 0), 255)


def _keys(d: Fraction) -> Fraction:
    """Keys' cubic convolution kernel with a = -1/2, exact."""
    a = Fraction(-1, 2)
    d = abs(d)
    if d <= 1:
        return (a + 2) * d**3 - (a + 3) * d**2 + 1
    if d < 2:
        return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
    return Fraction(0)


def bicubic_weights(s: int) -> tuple[np.ndarray, np.ndarray]:
    """First tap offsets int64[s] and integer weights int64[s, 4] of scale s (spec §8.1).

    Phase j has the fractional source position f = (j + 0.5) / s - 0.5, taps at
    o + t (o = floor(f) - 1) at distances f - o - t; each weight is floor(4096 K + 0.5),
    computed exactly, with 4096 minus their sum added to the largest one.
    """
    s = int(s)
    if s < 1:
        raise ValueError("scale must be >= 1")
    offsets, weights = _phases(s)
    return np.array(offsets, np.int64), np.array(weights, np.int64).reshape(s, 4)


@functools.lru_cache(maxsize=64)
def _phases(s: int) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """bicubic_weights as tuples, computed once per scale (exact arithmetic is slow)."""
    offsets, weights = [], []
    for j in range(s):
        f = Fraction(2 * j + 1 - s, 2 * s)
        o = math.floor(f) - 1
        w = [math.floor(4096 * _keys(f - o - t) + Fraction(1, 2)) for t in range(4)]
        w[w.index(max(w))] += 4096 - sum(w)
        offsets.append(o)
        weights.append(tuple(w))
    return tuple(offsets), tuple(weights)


def area_downsample(img, s: int, mask=None) -> np.ndarray:
    """uint8[H, W, C] -> uint8[ceil(H/s), ceil(W/s), C], each block's mean rounded half up.

    With a ``mask`` (H, W; nonzero = subject) a block averages only its background pixels
    if it has any.
    """
    s = int(s)
    if s < 1:
        raise ValueError("scale must be >= 1")
    img = as_u8(img, 3, "img")
    mask = np.zeros(img.shape[:2], np.uint8) if mask is None else as_u8(mask, 2, "mask")
    if mask.shape != img.shape[:2]:
        raise ValueError(f"mask is {mask.shape}, image is {img.shape[:2]}")
    return _area_downsample(img, mask, s)


def bicubic_upsample(small, s: int, width: int, height: int) -> np.ndarray:
    """Upsample uint8[ceil(H/s), ceil(W/s), C] to uint8[height, width, C] as in spec §8.1."""
    s, width, height = int(s), int(width), int(height)
    small = as_u8(small, 3, "small")
    if s < 1 or width < 1 or height < 1:
        raise ValueError("scale, width and height must be >= 1")
    if small.shape[:2] != (-(-height // s), -(-width // s)):
        raise ValueError(f"small image is {small.shape[:2]}, expected ceil(H/s), ceil(W/s)")
    if s == 1:
        return small.copy()
    return _upsample(small, s, width, height)


def _upsample(small, s: int, width: int, height: int) -> np.ndarray:
    """The kernel's calls, a band of rows per CPU: every array they need allocated here."""
    bh, bw, channels = small.shape
    n = width * channels
    out = np.empty((height, n), np.uint8)
    offsets, weights = bicubic_weights(s)
    src = small.reshape(bh, bw * channels)

    def band(rows):
        _bicubic_upsample(src, channels, s, out[rows[0] : rows[1]], rows[0], offsets, weights,
                          np.empty((n, 4), np.int32), np.empty((n, 4), np.int32), np.empty((4, n), np.int32),
                          np.full(4, -1, np.int64))

    threads.run(band, threads.bands(height, height * width))
    return out.reshape(height, width, channels)
