"""A DCT-coded subject from pixels: the image as a JPEG at a quality, its subject blocks
requantised for our coefficient coder (the ``subject="high"`` mode, SUBJ coding 4).

``encode_dct_subject(pixels, mask, quality)`` encodes the image in memory as a JPEG at
``quality`` (Pillow, libjpeg-turbo defaults: 4:2:0 for colour), then changes the quantised
coefficients of the blocks the subject needs by rate-distortion optimisation (below), and
writes coding 4's payload with ``payload.build``. The decoder needs nothing new: the
payload holds ordinary quantised coefficients and libjpeg's tables.

Rate-distortion optimised quantisation. libjpeg rounds every coefficient to the nearest
step; that is what minimises the error, not error plus bits. Per stored block, in raster
order, a greedy pass visits the AC coefficients and moves each to whichever of its
libjpeg value, one step toward zero, zero, or (in a block the subject only partly covers)
the least-squares value gives the smallest ``D + lambda * R``:

- D is the squared error, in RGB units, over the subject's samples only: a sample the
  subject does not read costs nothing, so in a border block the background half of the
  block is free to take whatever values make the block cheapest.
- R is an estimate of our coder's bits (spec §6.4.5): a zero flag for every coefficient up
  to the last nonzero one of its run (interior, left edge, top edge; the coder codes a
  count and stops at the last), with a probability learnt from the image itself by
  position and the neighbours' magnitudes, and the nonzero magnitudes' exponent (learnt
  the same way), mantissa and sign bits. Two passes: the second relearns the rates from
  the first pass's coefficients.
- lambda is one of ``RDO_LAMBDAS`` times the square of the luma table's mean step, so
  that the trade keeps its balance at every quality; the largest that keeps the subject's
  error within the JPEG's is used.

DC coefficients are kept as libjpeg computed them.
"""

from __future__ import annotations

import dataclasses
import io

import numba
import numpy as np
from PIL import Image

from .._kernels.jpeg_coder import INTERIOR
from .._kernels.jpeg_huffman import ZIGZAG
from . import payload as _payload
from .parser import read_jpeg
from .pixels import render
from .select import kept_blocks
from ..masking import box_of

#: lambda / (mean luma quantiser step)^2, tried in turn (benchmarks/rdo.py measures them)
RDO_LAMBDAS = (0.06, 0.03, 0.015)
#: RGB squared error per unit squared error of a Y, Cb, Cr sample (JFIF's YCbCr -> RGB
#: matrix; a 2x2-subsampled chroma sample spreads over 4 pixels through the triangle
#: filter, sum of squared weights 1.5625)
_CHANNEL_WEIGHT = (3.0, 0.34414**2 + 1.772**2, 1.402**2 + 0.71414**2)
_SPREAD_420 = 1.5625
PRIOR_BUCKETS = 7  # neighbours' magnitude: bit length 0..5, 6 = no neighbour
EXP_MAX = 16
BANDS = 10
#: the three runs a block's AC coefficients are coded in (§6.4.5.5): interior in zigzag
#: order, then the left column and the top row
_RUNS = (np.array(INTERIOR, np.int64), np.arange(8, 64, 8, dtype=np.int64), np.arange(1, 8, dtype=np.int64))
_RUN_OF = np.zeros(64, np.int64)
_BAND = np.zeros(64, np.int64)
for _r, _run in enumerate(_RUNS):
    _RUN_OF[_run] = _r
_BAND[ZIGZAG] = np.minimum(np.arange(64) // 5, BANDS - 1)
RUN_INTERIOR, RUN_LEFT, RUN_TOP = _RUNS
BAND, RUN_OF = _BAND, _RUN_OF
ZZ = ZIGZAG.astype(np.int64)


def _dct_matrix() -> np.ndarray:
    """Orthonormal 8-point DCT-II: a JPEG coefficient is (A @ block @ A.T)[u, v] / Q."""
    k = np.arange(8)
    a = np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16) * 0.5
    a[0] /= np.sqrt(2)
    return a


_A = _dct_matrix()
#: BASIS[k, s]: sample s (row-major in the block) of the k-th basis function (natural order)
BASIS = np.einsum("uy,vx->uvyx", _A, _A).reshape(64, 64)


def jpeg_of(pixels: np.ndarray, quality: int) -> bytes:
    """The image (H, W, 1 or 3) as Pillow writes a JPEG at ``quality`` (its defaults)."""
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    out = io.BytesIO()
    try:
        image.save(out, "JPEG", quality=quality)
    except (OSError, ValueError) as exc:
        raise ValueError(f"subject='high' cannot code this image as a JPEG ({exc})") from exc
    return out.getvalue()


def _planes(pixels: np.ndarray) -> list[np.ndarray]:
    """libjpeg's Y, Cb, Cr planes (rgb_ycc_convert, 16-bit fixed point), or the grey plane."""
    if pixels.shape[2] == 1:
        return [pixels[:, :, 0].astype(np.int64)]
    r, g, b = (pixels[:, :, i].astype(np.int64) for i in range(3))
    half, offset = 1 << 15, 128 << 16

    def fix(x):
        return int(x * 65536 + 0.5)

    y = (fix(0.299) * r + fix(0.587) * g + fix(0.114) * b + half) >> 16
    cb = (-fix(0.16874) * r - fix(0.33126) * g + fix(0.5) * b + offset + half - 1) >> 16
    cr = (fix(0.5) * r - fix(0.41869) * g - fix(0.08131) * b + offset + half - 1) >> 16
    return [y, cb, cr]


def _pad(plane: np.ndarray, rows: int, cols: int) -> np.ndarray:
    return np.pad(plane, ((0, rows - plane.shape[0]), (0, cols - plane.shape[1])), mode="edge")


def _downsample(plane: np.ndarray, rh: int, rv: int, c) -> np.ndarray:
    """A component's samples as libjpeg makes them (edge-replicated, box average with
    libjpeg's alternating bias for 2:1), padded to whole blocks."""
    h, w = plane.shape
    full = _pad(plane, -(-h // rv) * rv, -(-w // rh) * rh)
    if (rh, rv) != (1, 1):
        sums = full.reshape(full.shape[0] // rv, rv, full.shape[1] // rh, rh).sum(axis=(1, 3))
        n = rh * rv
        bias = (np.arange(sums.shape[1]) % 2 + 1) if n in (2, 4) else n // 2
        full = (sums + bias) // n
    return _pad(full[: c.dh, : c.dw], 8 * c.nby, 8 * c.nbx)


def _blocks(plane: np.ndarray, c) -> np.ndarray:
    """(nby, nbx, 64) row-major 8x8 blocks of a padded plane."""
    return plane.reshape(c.nby, 8, c.nbx, 8).transpose(0, 2, 1, 3).reshape(c.nby, c.nbx, 64)


def _weights(mask: np.ndarray, rh: int, rv: int, c, channel: int) -> np.ndarray:
    """Per sample, the RGB squared error one unit of sample error costs the subject: the
    fraction of the pixels it stands for that are subject, times the channel's weight."""
    h, w = mask.shape
    m = _pad(mask.astype(np.float64), -(-h // rv) * rv, -(-w // rh) * rh)
    m[h:] = 0
    m[:, w:] = 0
    share = m.reshape(m.shape[0] // rv, rv, m.shape[1] // rh, rh).mean(axis=(1, 3))[: c.dh, : c.dw]
    weight = _CHANNEL_WEIGHT[channel] * (_SPREAD_420 if (rh, rv) != (1, 1) else 1.0)
    out = np.zeros((8 * c.nby, 8 * c.nbx))
    out[: c.dh, : c.dw] = share * weight
    return out


def _rate_tables(coef: np.ndarray, stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bits of a zero flag (run position, prior, nonzero?) and of an exponent (band,
    prior, e), learnt from the stored blocks of one component (coef: nby, nbx, 64)."""
    flags = np.ones((64, PRIOR_BUCKETS, 2))  # +1 smoothing
    exps = np.full((BANDS, PRIOR_BUCKETS, EXP_MAX + 1), 0.2)
    _count(coef, stored.astype(np.uint8), flags, exps)
    flag_bits = -np.log2(flags / flags.sum(axis=2, keepdims=True))
    exp_bits = -np.log2(exps / exps.sum(axis=2, keepdims=True))
    return flag_bits, exp_bits


@numba.njit(cache=True, nogil=True)
def _bitlen(v):
    n = 0
    while v > 0:
        v >>= 1
        n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _prior(coef, stored, by, bx, k):
    """0..5 from the left and upper blocks' magnitudes of coefficient k, 6 if neither."""
    s = 0
    n = 0
    if bx > 0 and stored[by, bx - 1]:
        s += abs(np.int64(coef[by, bx - 1, k]))
        n += 1
    if by > 0 and stored[by - 1, bx]:
        s += abs(np.int64(coef[by - 1, bx, k]))
        n += 1
    if n == 0:
        return PRIOR_BUCKETS - 1
    if n == 1:
        s *= 2
    return min(_bitlen(s), PRIOR_BUCKETS - 2)


@numba.njit(cache=True, nogil=True)
def _count(coef, stored, flags, exps):
    nby, nbx = stored.shape
    for by in range(nby):
        for bx in range(nbx):
            if not stored[by, bx]:
                continue
            for r in range(3):
                run = RUN_INTERIOR if r == 0 else (RUN_LEFT if r == 1 else RUN_TOP)
                last = -1
                for i in range(run.shape[0]):
                    if coef[by, bx, run[i]] != 0:
                        last = i
                for i in range(last + 1):
                    k = run[i]
                    v = abs(np.int64(coef[by, bx, k]))
                    p = _prior(coef, stored, by, bx, k)
                    flags[k, p, 1 if v else 0] += 1
                    if v:
                        exps[BAND[k], p, min(_bitlen(v), EXP_MAX)] += 1


@numba.njit(cache=True, nogil=True)
def _run_bits(vals, run, pr, flag_bits, exp_bits):
    """Estimated bits of one run of a block whose AC values are ``vals`` (natural order)
    and whose neighbours' priors are ``pr``."""
    last = -1
    for i in range(run.shape[0]):
        if vals[run[i]] != 0:
            last = i
    bits = 0.0
    for i in range(last + 1):
        k = run[i]
        v = abs(vals[k])
        if v == 0:
            bits += flag_bits[k, pr[k], 0]
        else:
            e = _bitlen(v)
            bits += flag_bits[k, pr[k], 1] + exp_bits[BAND[k], pr[k], min(e, EXP_MAX)] + e  # mantissa e - 1, sign 1
    return bits


@numba.njit(cache=True, nogil=True)
def _rdo(coef, x, w, stored, q, basis, flag_bits, exp_bits, lam):
    """Requantise the stored blocks of one component in place (see the module doc).

    coef int16[nby, nbx, 64] (natural order), x float[nby, nbx, 64] the unquantised
    samples minus 128 (row-major), w float[nby, nbx, 64] their weights, q the table.
    """
    nby, nbx = stored.shape
    vals = np.zeros(64, np.int64)
    pr = np.zeros(64, np.int64)
    err = np.zeros(64)
    cands = np.zeros(3, np.int64)
    for by in range(nby):
        for bx in range(nbx):
            if not stored[by, bx]:
                continue
            wsum = 0.0
            for s in range(64):
                wsum += w[by, bx, s]
            if wsum == 0.0:
                continue
            for k in range(64):
                vals[k] = coef[by, bx, k]
                pr[k] = _prior(coef, stored, by, bx, k)
            for s in range(64):  # the error of the current coefficients, per sample
                r = 0.0
                for k in range(64):
                    if vals[k] != 0:
                        r += vals[k] * q[k] * basis[k, s]
                err[s] = x[by, bx, s] - r
            for zi in range(63, 0, -1):
                k = ZZ[zi]
                qk = q[k]
                if qk == 0:
                    continue
                run = RUN_INTERIOR if RUN_OF[k] == 0 else (RUN_LEFT if RUN_OF[k] == 1 else RUN_TOP)
                dot = 0.0
                g = 0.0
                for s in range(64):
                    wb = w[by, bx, s] * basis[k, s]
                    dot += wb * err[s]
                    g += wb * basis[k, s]
                v = vals[k]
                cands[0] = 0
                cands[1] = v - 1 if v > 0 else (v + 1 if v < 0 else 0)  # one step toward zero
                cands[2] = v + np.int64(np.round(dot / (qk * g))) if g > 1e-9 else v  # least squares
                base = _run_bits(vals, run, pr, flag_bits, exp_bits)
                best_cost = 0.0
                best = v
                for ci in range(3):
                    c = min(max(cands[ci], -2047), 2047)
                    if c == v:
                        continue
                    d = (c - v) * qk
                    vals[k] = c
                    cost = d * d * g - 2.0 * d * dot + lam * (_run_bits(vals, run, pr, flag_bits, exp_bits) - base)
                    vals[k] = v
                    if cost < best_cost:
                        best_cost = cost
                        best = c
                if best != v:
                    d = (best - v) * qk
                    for s in range(64):
                        err[s] -= d * basis[k, s]
                    vals[k] = best
                    coef[by, bx, k] = best


def requantise(img, pixels: np.ndarray, mask: np.ndarray, lam: float, passes: int = 2) -> np.ndarray:
    """The coefficients of ``img`` (a parser.JpegImage of ``pixels``) with the stored
    blocks of ``mask`` rate-distortion optimised; a new int16[nblocks, 64] array."""
    coef = img.coef.copy()
    planes = _planes(pixels)
    keep = kept_blocks(mask, img.components)
    hmax, vmax = img.hmax, img.vmax
    basis = np.ascontiguousarray(BASIS)
    for ci, c in enumerate(img.components):
        rh, rv = hmax // c.h, vmax // c.v
        x = _blocks(_downsample(planes[ci], rh, rv, c).astype(np.float64) - 128, c)
        w = _blocks(_weights(mask, rh, rv, c, ci if len(planes) == 3 else 0), c)
        grid = coef[c.offset : c.offset + c.rows * c.stride].reshape(c.rows, c.stride, 64)[: c.nby, : c.nbx]
        stored = keep[ci]
        q = img.qtables[ci].astype(np.float64)
        for _ in range(passes):
            flag_bits, exp_bits = _rate_tables(grid, stored)
            _rdo(grid, np.ascontiguousarray(x), np.ascontiguousarray(w), stored, q, basis, flag_bits, exp_bits, lam)
    return coef


def subject_pixels(img, mask: np.ndarray) -> np.ndarray:
    """The pixels (h, w, C) of the mask's box that ``img``'s coefficients decode to (exact at
    the subject pixels, as the coding 4 decoder computes them)."""
    blocks = []
    for c in img.components:
        coef = img.coef[c.offset : c.offset + c.rows * c.stride]
        index = np.arange(c.rows * c.stride, dtype=np.int32).reshape(c.rows, c.stride)
        blocks.append((coef, np.ascontiguousarray(index[: c.nby, : c.nbx])))
    x0, y0, w, h = box = box_of(mask)
    return render(img.components, img.colour, img.qtables, blocks, box, mask[y0 : y0 + h, x0 : x0 + w])


def subject_error(img, pixels: np.ndarray, mask: np.ndarray) -> float:
    """Sum of squared errors over the subject's channels of ``img``'s decoded pixels."""
    x0, y0, w, h = box_of(mask)
    sel = mask[y0 : y0 + h, x0 : x0 + w] != 0
    got = subject_pixels(img, mask)[sel].astype(np.int64)
    return float(np.sum((got - pixels[y0 : y0 + h, x0 : x0 + w][sel]) ** 2))


def encode_dct_subject(pixels: np.ndarray, mask: np.ndarray, quality: int) -> bytes:
    """Coding 4's payload for the subject of ``pixels`` (H, W, 1 or 3) as a JPEG at
    ``quality`` (1-100) would give it, rate-distortion optimised.

    The subject's squared error never exceeds that of Pillow's JPEG at ``quality``: the
    largest of ``RDO_LAMBDAS`` that keeps it there is used (checked on the decoded pixels),
    else libjpeg's coefficients themselves.
    """
    img = read_jpeg(jpeg_of(pixels, quality))
    budget = subject_error(img, pixels, mask)
    step = float(np.mean(img.qtables[0]))
    for lam in RDO_LAMBDAS:
        tuned = dataclasses.replace(img, coef=requantise(img, pixels, mask, lam * step * step))
        if subject_error(tuned, pixels, mask) <= budget:
            img = tuned
            break
    return _payload.build(img, mask, "arith")
