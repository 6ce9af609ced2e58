"""JPEG pixel reconstruction, bit-exact with libjpeg-turbo's default decoding path.

- ``idct_blocks``: dequantisation and the ISLOW integer inverse DCT (IJG jidctint.c:
  CONST_BITS 13, PASS1_BITS 2, the column pass then the row pass, each with the
  all-AC-zero shortcut, which gives the same values as the full computation), with the
  output range-limited to 0..255 after adding 128.
- ``upsample_convert``: libjpeg-turbo's "fancy" (triangle) chroma upsampling for 2:1
  ratios (h2v1, h1v2, h2v2, edge samples replicated), plain replication for the other
  integer ratios and for components at most 2 samples wide (h2v1, h2v2), then the
  YCbCr -> RGB table conversion of jdcolor.c (SCALEBITS 16), or a copy for RGB and grey.

The reference arithmetic is spelled out in spec/FORMAT.md §6.4. All sums fit int64 for
any int16 coefficient and uint16 quantiser, so no input can make a kernel misbehave.
"""

import numba
import numpy as np

# IJG jidctint.c constants: FIX(x) = round(x * 2^13).
F0_298 = 2446
F0_390 = 3196
F0_541 = 4433
F0_765 = 6270
F0_899 = 7373
F1_175 = 9633
F1_501 = 12299
F1_847 = 15137
F1_961 = 16069
F2_053 = 16819
F2_562 = 20995
F3_072 = 25172


@numba.njit(cache=True, nogil=True, inline="always")
def _idct_1d(c0, c1, c2, c3, c4, c5, c6, c7, out, o, step, shift, bias):
    """One 8-point ISLOW pass; writes (x + bias) >> shift to out[o + i * step]."""
    z1 = (c2 + c6) * F0_541
    tmp2 = z1 - c6 * F1_847
    tmp3 = z1 + c2 * F0_765
    tmp0 = (c0 + c4) << 13
    tmp1 = (c0 - c4) << 13
    tmp10 = tmp0 + tmp3
    tmp13 = tmp0 - tmp3
    tmp11 = tmp1 + tmp2
    tmp12 = tmp1 - tmp2
    t0, t1, t2, t3 = c7, c5, c3, c1
    z1 = t0 + t3
    z2 = t1 + t2
    z3 = t0 + t2
    z4 = t1 + t3
    z5 = (z3 + z4) * F1_175
    t0 = t0 * F0_298
    t1 = t1 * F2_053
    t2 = t2 * F3_072
    t3 = t3 * F1_501
    z1 = -z1 * F0_899
    z2 = -z2 * F2_562
    z3 = -z3 * F1_961 + z5
    z4 = -z4 * F0_390 + z5
    t0 += z1 + z3
    t1 += z2 + z4
    t2 += z2 + z3
    t3 += z1 + z4
    out[o] = (tmp10 + t3 + bias) >> shift
    out[o + 7 * step] = (tmp10 - t3 + bias) >> shift
    out[o + step] = (tmp11 + t2 + bias) >> shift
    out[o + 6 * step] = (tmp11 - t2 + bias) >> shift
    out[o + 2 * step] = (tmp12 + t1 + bias) >> shift
    out[o + 5 * step] = (tmp12 - t1 + bias) >> shift
    out[o + 3 * step] = (tmp13 + t0 + bias) >> shift
    out[o + 4 * step] = (tmp13 - t0 + bias) >> shift


@numba.njit(cache=True, nogil=True)
def _idct_blocks(coef, index, q, plane, by0, bx0):
    """IDCT the blocks of a window of one component into ``plane``.

    ``index[by, bx]`` (the component's whole block grid) is the row of ``coef`` holding
    block (bx, by), or -1 for a block that is not available (its samples are left alone).
    ``plane`` covers the blocks from (bx0, by0) on; blocks that fall outside it are skipped.
    """
    ws = np.empty(64, np.int64)
    px = np.empty(64, np.int64)
    d = np.empty(64, np.int64)
    nby, nbx = index.shape
    ph, pw = plane.shape
    if q.shape[0] < 64 or coef.shape[1] < 64:
        return
    for wy in range(ph // 8):
        by = by0 + wy
        if by < 0 or by >= nby:
            continue
        for wx in range(pw // 8):
            bx = bx0 + wx
            if bx < 0 or bx >= nbx:
                continue
            b = index[by, bx]
            if b < 0 or b >= coef.shape[0]:
                continue
            for i in range(64):
                d[i] = np.int64(coef[b, i]) * np.int64(q[i])
            # Pass 1: columns, results scaled by 2^PASS1_BITS.
            for col in range(8):
                if (d[8 + col] == 0 and d[16 + col] == 0 and d[24 + col] == 0 and d[32 + col] == 0
                        and d[40 + col] == 0 and d[48 + col] == 0 and d[56 + col] == 0):
                    dc = d[col] << 2
                    for r in range(8):
                        ws[8 * r + col] = dc
                    continue
                _idct_1d(d[col], d[8 + col], d[16 + col], d[24 + col], d[32 + col], d[40 + col],
                         d[48 + col], d[56 + col], ws, col, 8, 11, np.int64(1) << 10)
            # Pass 2: rows, descale by 2^(CONST_BITS + PASS1_BITS + 3).
            for r in range(8):
                o = 8 * r
                _idct_1d(ws[o], ws[o + 1], ws[o + 2], ws[o + 3], ws[o + 4], ws[o + 5], ws[o + 6],
                         ws[o + 7], px, o, 1, 18, np.int64(1) << 17)
            y0 = wy * 8
            x0 = wx * 8
            for r in range(8):
                for c in range(8):
                    v = px[8 * r + c] + 128
                    plane[y0 + r, x0 + c] = 0 if v < 0 else (255 if v > 255 else v)


def idct_blocks(coef, index, q, plane, by0: int, bx0: int) -> None:
    """IDCT into ``plane`` (uint8[8 m, 8 n]) the blocks of ``index`` from (bx0, by0) on.

    ``coef`` int16[k, 64] natural order, ``index`` int32[nby, nbx] (row of coef or -1),
    ``q`` uint16[64] natural order. Any values are safe.
    """
    _idct_blocks(coef, index, q, plane, np.int64(by0), np.int64(bx0))


@numba.njit(cache=True, nogil=True, inline="always")
def _clamp(v, lo, hi):
    return lo if v < lo else (hi if v > hi else v)


@numba.njit(cache=True, nogil=True)
def _triangle(sums, lo, dw, xa, n, row, even, odd, shift):
    """The horizontal 2:1 triangle filter: output x (xa .. xa + n - 1) from the values
    ``sums[s - lo]`` of sample s = x >> 1 and its neighbour on x's side (clamped to
    0 .. dw - 1), (3 * near + far + even or odd) >> shift; two outputs per sample."""
    end = xa + n
    first, last = xa >> 1, (end - 1) >> 1
    for s in (first, last):  # the ends: a sample may have one output, or no neighbour
        near = 3 * np.int64(sums[s - lo])
        if 2 * s >= xa:
            row[2 * s - xa] = (near + sums[max(s - 1, 0) - lo] + even) >> shift
        if 2 * s + 1 < end:
            row[2 * s + 1 - xa] = (near + sums[min(s + 1, dw - 1) - lo] + odd) >> shift
    for s in range(first + 1, last):  # both outputs, both neighbours inside 0 .. dw - 1
        near = 3 * np.int64(sums[s - lo])
        row[2 * s - xa] = (near + sums[s - 1 - lo] + even) >> shift
        row[2 * s + 1 - xa] = (near + sums[s + 1 - lo] + odd) >> shift


@numba.njit(cache=True, nogil=True)
def _upsample_row(plane, info, c, xa, n, y, row, sums):
    """Upsampled values of component ``c`` at output pixels (xa .. xa + n - 1, y) into
    ``row[:n]`` (T.81 sampling grid); ``sums`` (as long as the samples read) is scratch."""
    off, stride, ox, oy, dw, dh, rh, rv, fancy_h = (
        info[c, 0], info[c, 1], info[c, 2], info[c, 3], info[c, 4], info[c, 5],
        info[c, 6], info[c, 7], info[c, 8],
    )  # fmt: skip
    if rh == 1 and rv == 1:
        base = off + (y - oy) * stride - ox
        for i in range(n):
            row[i] = plane[base + xa + i]
    elif rh == 2 and rv == 1 and fancy_h:
        base = off + (y - oy) * stride - ox
        lo = _clamp((xa - 1) >> 1, 0, dw - 1)
        for s in range(lo, _clamp((xa + n) >> 1, 0, dw - 1) + 1):
            sums[s - lo] = plane[base + s]
        _triangle(sums, lo, dw, xa, n, row, np.int64(1), np.int64(2), np.int64(2))
    elif rh == 1 and rv == 2:
        cy = y >> 1
        ny = _clamp(cy - 1 + 2 * (y & 1), 0, dh - 1)
        near = off + (cy - oy) * stride - ox
        far = off + (ny - oy) * stride - ox
        for i in range(n):
            row[i] = (3 * np.int64(plane[near + xa + i]) + np.int64(plane[far + xa + i]) + 1 + (y & 1)) >> 2
    elif rh == 2 and rv == 2 and fancy_h:
        cy = y >> 1
        ny = _clamp(cy - 1 + 2 * (y & 1), 0, dh - 1)
        near = off + (cy - oy) * stride - ox
        far = off + (ny - oy) * stride - ox
        lo = _clamp((xa - 1) >> 1, 0, dw - 1)  # the columns read: the vertical pass first
        for s in range(lo, _clamp((xa + n) >> 1, 0, dw - 1) + 1):
            sums[s - lo] = 3 * np.int64(plane[near + s]) + np.int64(plane[far + s])
        _triangle(sums, lo, dw, xa, n, row, np.int64(8), np.int64(7), np.int64(4))
    else:  # replication: int_upsample, and h2v1 / h2v2 for components at most 2 samples wide
        base = off + (y // rv - oy) * stride - ox
        for i in range(n):
            row[i] = plane[base + (xa + i) // rh]


@numba.njit(cache=True, nogil=True)
def _upsample_convert(out, mask, plane, info, x0, y0, colour):
    """Pixels of the box at (x0, y0) where ``mask`` is nonzero; see upsample_convert."""
    h, w, nc = out.shape
    ncomp = info.shape[0]
    if mask.shape[0] != h or mask.shape[1] != w or info.shape[1] < 9 or (nc != ncomp) or nc > 3:
        return -1
    # Every sample read must lie in ``plane``: check each component's window once.
    for c in range(ncomp):
        off, stride, ox, oy, dw, dh, rh, rv = (
            info[c, 0], info[c, 1], info[c, 2], info[c, 3], info[c, 4], info[c, 5], info[c, 6], info[c, 7]
        )
        if rh < 1 or rv < 1 or dw < 1 or dh < 1 or off < 0 or stride < 1:
            return -1
        # The box lies in the image: each pixel's own sample exists.
        if x0 < 0 or y0 < 0 or (x0 + w - 1) // rh >= dw or (y0 + h - 1) // rv >= dh:
            return -1
        # Samples read for the box: x // rh -/+ 1 clamped to the component, likewise y.
        lo_x = _clamp((x0 - 1) // rh, 0, dw - 1)
        hi_x = _clamp((x0 + w) // rh, 0, dw - 1)
        lo_y = _clamp((y0 - 1) // rv, 0, dh - 1)
        hi_y = _clamp((y0 + h) // rv, 0, dh - 1)
        if lo_x < ox or hi_x - ox >= stride or lo_y < oy:
            return -1
        if off + (hi_y - oy) * stride + (hi_x - ox) >= plane.shape[0]:
            return -1
    crr = np.empty(256, np.int64)
    cbb = np.empty(256, np.int64)
    crg = np.empty(256, np.int64)
    cbg = np.empty(256, np.int64)
    for i in range(256):
        xv = np.int64(i - 128)
        crr[i] = (91881 * xv + 32768) >> 16  # FIX(1.40200)
        cbb[i] = (116130 * xv + 32768) >> 16  # FIX(1.77200)
        crg[i] = -46802 * xv  # FIX(0.71414)
        cbg[i] = -22554 * xv + 32768  # FIX(0.34414), plus ONE_HALF
    rows = np.empty((3, w), np.int32)
    sums = np.empty(w // 2 + 3, np.int32)
    for j in range(h):
        first = 0  # the row's first and last subject pixels
        while first < w and mask[j, first] == 0:
            first += 1
        if first == w:
            continue
        last = w - 1
        while mask[j, last] == 0:
            last -= 1
        for k in range(ncomp):
            _upsample_row(plane, info, k, x0 + first, last + 1 - first, y0 + j, rows[k], sums)
        for i in range(first, last + 1):
            if mask[j, i] == 0:
                continue
            a = rows[0, i - first]
            if ncomp == 1:
                out[j, i, 0] = a
                continue
            b, c = rows[1, i - first], rows[2, i - first]
            if colour == 1:
                out[j, i, 0] = _clamp(a + crr[c], 0, 255)
                out[j, i, 1] = _clamp(a + ((cbg[b] + crg[c]) >> 16), 0, 255)
                out[j, i, 2] = _clamp(a + cbb[b], 0, 255)
            else:
                out[j, i, 0] = a
                out[j, i, 1] = b
                out[j, i, 2] = c
    return 0


def upsample_convert(out, mask, plane, info, x0: int, y0: int, colour: int) -> int:
    """Fill ``out`` (uint8[h, w, C]), the box at (x0, y0), where ``mask`` (uint8[h, w]) is set.

    ``plane`` is a flat uint8 buffer holding, per component ``c``, a window of its samples;
    ``info[c]`` (int64) = offset of the window in ``plane``, its row stride, the sample
    coordinates (ox, oy) of its first sample, the component size (dw, dh), the upsampling
    ratios (rh, rv) and 1 if a 2:1 horizontal ratio uses the fancy filter.
    ``colour`` 1 converts YCbCr to RGB, 0 copies. Returns 0, or -1 if the box leaves the
    image or a window is too small for it (nothing written then).
    """
    return int(_upsample_convert(out, mask, plane, info, np.int64(x0), np.int64(y0), np.int64(colour)))
