"""Entropy decoding of JPEG scans: baseline and progressive Huffman (ITU-T T.81 F.2, G.2).

The marker segments are parsed in Python (``peterpan_format.jpeg.parser``); this module
decodes the entropy-coded data of one scan into quantised DCT coefficients. The kernel
never raises and never reads outside its arrays, whatever the bytes: it returns a status
(0 = success, negative = one of ``HUFF_ERRORS``) and the position where the scan's data
ended. Every loop is bounded by the number of MCUs, the 64 coefficients of a block or
the length of the data.

Layouts handed to the kernel (all C-contiguous):

- ``data``: uint8[n], the whole JPEG file.
- ``coef``: int16[nblocks, 64], every block of every component, natural (row-major) order.
- ``comps``: int64[ns, 8], one row per component of the scan: first block index of the
  component in ``coef``, blocks per row of its storage, h, v, DC table, AC table, blocks
  across and down for a non-interleaved scan (ceil(component width / 8), ...).
- ``luts``: int32[8, 65536]: DC tables 0-3 then AC tables 4-7. Entry ``c`` of a table is
  ``(length << 8) | symbol`` for the code that is a prefix of the 16 bits ``c``, or 0.
- ``params``: int64[8]: MCUs across, MCUs down (interleaved scans), Ss, Se, Ah, Al,
  restart interval, 1 for a progressive frame.
"""

import numba
import numpy as np

OK = 0
ERR_BAD_CODE = -1
ERR_COEF_INDEX = -2
ERR_TRUNCATED = -3
ERR_RESTART = -4
ERR_REFINE = -5
ERR_PARAMS = -6

HUFF_ERRORS = {
    ERR_BAD_CODE: "invalid Huffman code",
    ERR_COEF_INDEX: "run of coefficients past the end of the block",
    ERR_TRUNCATED: "entropy-coded data ends early",
    ERR_RESTART: "missing or wrong restart marker",
    ERR_REFINE: "invalid refinement symbol",
    ERR_PARAMS: "invalid scan parameters",
}

# ZIGZAG[k] is the natural (row-major) index of the k-th coefficient in zigzag order.
ZIGZAG = np.array(
    [
        0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
        12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
        35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
        58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
    ],
    np.int64,
)  # fmt: skip

# The bit reader's state is a tuple S = (bits, count, position, zeros, marker): the
# accumulated bits, how many, the read position, how many zero bits were inserted after a
# marker or the end of the data, and 1 once a marker has been reached. Kernels pass it
# along and get it back, so that it lives in registers.


@numba.njit(cache=True, nogil=True, inline="always")
def _fill(data, S):
    """Top up the bit buffer to more than 48 bits; zero bytes past a marker or the end."""
    buf, cnt, pos, zeros, mark = S
    n = data.shape[0]
    while cnt <= 48:
        byte = np.int64(0)
        if mark == 0:
            if pos < n and data[pos] != 0xFF:
                byte = np.int64(data[pos])
                pos += 1
            elif pos + 1 < n and data[pos + 1] == 0:  # stuffed 0xFF 0x00
                byte = np.int64(0xFF)
                pos += 2
            else:  # a marker (or the end of the data): feed zeros from now on
                mark = np.int64(1)
        if mark != 0:
            zeros += 8
        buf = (buf << 8) | byte
        cnt += 8
    return (buf, cnt, pos, zeros, mark)


@numba.njit(cache=True, nogil=True, inline="always")
def _huff(data, luts, t, S):
    """(next Huffman symbol of table t, or -1 for an invalid code; new state)."""
    if S[1] < 16:
        S = _fill(data, S)
    buf, cnt, pos, zeros, mark = S
    e = np.int64(luts[t, (buf >> (cnt - 16)) & 0xFFFF])
    if e == 0:
        return np.int64(-1), S
    return e & 0xFF, (buf, cnt - (e >> 8), pos, zeros, mark)


@numba.njit(cache=True, nogil=True, inline="always")
def _bits(data, n, S):
    """(the next n (0..16) bits as an unsigned integer; new state)."""
    if n == 0:
        return np.int64(0), S
    if S[1] < n:
        S = _fill(data, S)
    buf, cnt, pos, zeros, mark = S
    cnt -= n
    return (buf >> cnt) & ((np.int64(1) << n) - 1), (buf, cnt, pos, zeros, mark)


@numba.njit(cache=True, nogil=True)
def _extend(v, s):
    """T.81 F.12 EXTEND: the signed value of the ``s``-bit magnitude category code ``v``."""
    if s == 0:
        return np.int64(0)
    if v < (np.int64(1) << (s - 1)):
        return v - (np.int64(1) << s) + 1
    return v


@numba.njit(cache=True, nogil=True)
def _overrun(S):
    """True if bits that were never in the data (zeros after a marker) were consumed."""
    return S[1] < S[3]


@numba.njit(cache=True, nogil=True)
def _restart(data, S, expected):
    """(status, new state): skip to the restart marker RST(expected), reset the reader."""
    if _overrun(S):
        return ERR_TRUNCATED, S
    n = data.shape[0]
    pos = S[2]
    # Bytes of entropy-coded data left unread (a libjpeg warning): skip to the marker.
    while pos < n:
        if data[pos] == 0xFF and pos + 1 < n and data[pos + 1] != 0:
            break
        pos += 1
    while pos + 1 < n and data[pos + 1] == 0xFF:  # fill bytes before the marker
        pos += 1
    zero = np.int64(0)
    if pos + 1 >= n or data[pos + 1] != 0xD0 + expected:
        return ERR_RESTART, (zero, zero, pos, zero, zero)
    return OK, (zero, zero, pos + 2, zero, zero)


@numba.njit(cache=True, nogil=True)
def _block_baseline(data, luts, coef, b, dct, act, pred, S):
    """Decode one sequential block into coef[b]; (status, new DC predictor, state)."""
    status, pred, S = _block_dc_first(data, luts, coef, b, dct, pred, 0, S)
    if status != OK:
        return status, pred, S
    k = 1
    while k < 64:
        rs, S = _huff(data, luts, 4 + act, S)
        if rs < 0:
            return ERR_BAD_CODE, pred, S
        r = rs >> 4
        s = rs & 15
        if s != 0:
            k += r
            if k > 63:
                return ERR_COEF_INDEX, pred, S
            v, S = _bits(data, s, S)
            coef[b, ZIGZAG[k]] = np.int16(_extend(v, s))
            k += 1
        elif r == 15:  # ZRL: sixteen zeros (a run past the end just ends the block)
            k += 16
        else:
            break
    return OK, pred, S


@numba.njit(cache=True, nogil=True)
def _block_dc_first(data, luts, coef, b, dct, pred, al, S):
    s, S = _huff(data, luts, dct, S)
    if s < 0 or s > 15:
        return ERR_BAD_CODE, pred, S
    v, S = _bits(data, s, S)
    pred = pred + _extend(v, s)
    coef[b, 0] = np.int16(pred << al)
    return OK, pred, S


@numba.njit(cache=True, nogil=True)
def _block_ac_first(data, luts, coef, b, act, ss, se, al, eobrun, S):
    """One block of an AC first scan; (status, new EOB run, state)."""
    if eobrun > 0:
        return OK, eobrun - 1, S
    k = ss
    while k <= se:
        rs, S = _huff(data, luts, 4 + act, S)
        if rs < 0:
            return ERR_BAD_CODE, eobrun, S
        r = rs >> 4
        s = rs & 15
        if s != 0:
            k += r
            if k > se:
                return ERR_COEF_INDEX, eobrun, S
            v, S = _bits(data, s, S)
            coef[b, ZIGZAG[k]] = np.int16(_extend(v, s) << al)
        elif r == 15:  # ZRL
            k += 15
        else:
            v, S = _bits(data, r, S)
            eobrun = (np.int64(1) << r) + v - 1
            break
        k += 1
    return OK, eobrun, S


@numba.njit(cache=True, nogil=True)
def _refine_bit(data, coef, b, z, p1, S):
    """Apply a correction bit to the already-nonzero coefficient at natural index z."""
    bit, S = _bits(data, 1, S)
    if bit != 0:
        c = np.int64(coef[b, z])
        if (c & p1) == 0:
            coef[b, z] = np.int16(c + p1 if c >= 0 else c - p1)
    return S


@numba.njit(cache=True, nogil=True)
def _block_ac_refine(data, luts, coef, b, act, ss, se, al, eobrun, S):
    """One block of an AC refinement scan (T.81 G.1.2.3); (status, new EOB run, state)."""
    p1 = np.int64(1) << al
    k = ss
    if eobrun == 0:
        while k <= se:
            rs, S = _huff(data, luts, 4 + act, S)
            if rs < 0:
                return ERR_BAD_CODE, eobrun, S
            r = rs >> 4
            s = rs & 15
            value = np.int64(0)
            if s != 0:
                if s != 1:
                    return ERR_REFINE, eobrun, S
                bit, S = _bits(data, 1, S)
                value = p1 if bit != 0 else -p1
            elif r != 15:
                v, S = _bits(data, r, S)
                eobrun = (np.int64(1) << r) + v
                break
            # Skip r zero-history coefficients, refining the nonzero ones on the way.
            while k <= se:
                z = ZIGZAG[k]
                if coef[b, z] != 0:
                    S = _refine_bit(data, coef, b, z, p1, S)
                else:
                    if r == 0:
                        break
                    r -= 1
                k += 1
            if value != 0:
                if k > se:
                    return ERR_COEF_INDEX, eobrun, S
                coef[b, ZIGZAG[k]] = np.int16(value)
            k += 1
    if eobrun > 0:
        while k <= se:
            z = ZIGZAG[k]
            if coef[b, z] != 0:
                S = _refine_bit(data, coef, b, z, p1, S)
            k += 1
        eobrun -= 1
    return OK, eobrun, S


@numba.njit(cache=True, nogil=True)
def _decode_scan(data, start, coef, comps, luts, params):
    """Decode one scan starting at data[start]; returns (status, end position)."""
    ns = comps.shape[0]
    if ns < 1 or ns > 4 or comps.shape[1] < 8 or luts.shape[0] < 8 or luts.shape[1] != 65536 or params.shape[0] < 8:
        return ERR_PARAMS, start
    mcus_x, mcus_y, ss, se, ah, al, interval, progressive = (
        params[0], params[1], params[2], params[3], params[4], params[5], params[6], params[7]
    )
    if ss < 0 or se > 63 or ss > se or al < 0 or al > 13 or ah < 0 or ah > 13 or interval < 0:
        return ERR_PARAMS, start
    if start < 0 or start > data.shape[0] or mcus_x < 1 or mcus_y < 1:
        return ERR_PARAMS, start
    # Every block index the scan can touch must lie inside coef.
    nblocks = coef.shape[0]
    for c in range(ns):
        off, stride, h, v, dct, act, nbx, nby = (
            comps[c, 0], comps[c, 1], comps[c, 2], comps[c, 3],
            comps[c, 4], comps[c, 5], comps[c, 6], comps[c, 7],
        )  # fmt: skip
        if dct < 0 or dct > 3 or act < 0 or act > 3 or off < 0 or stride < 1 or h < 1 or v < 1:
            return ERR_PARAMS, start
        if ns == 1:
            if nbx < 1 or nby < 1 or nbx > stride or off + nby * stride > nblocks:
                return ERR_PARAMS, start
        elif mcus_x * h > stride or off + mcus_y * v * stride > nblocks:
            return ERR_PARAMS, start
    if ns == 1:
        total = comps[0, 6] * comps[0, 7]
        per_row = comps[0, 6]
    else:
        total = mcus_x * mcus_y
        per_row = mcus_x
    if progressive == 0 and (ss != 0 or se != 63 or ah != 0 or al != 0):
        return ERR_PARAMS, start
    if progressive != 0 and ((ss == 0 and se != 0) or (ss > 0 and ns != 1)):
        return ERR_PARAMS, start
    if progressive != 0 and ah != 0 and al != ah - 1:
        return ERR_PARAMS, start

    zero = np.int64(0)
    S = (zero, zero, np.int64(start), zero, zero)
    pred = np.zeros(4, np.int64)
    eobrun = np.int64(0)
    to_go = interval
    rst = 0
    status = OK
    for m in range(total):
        if interval > 0:
            if to_go == 0:
                status, S = _restart(data, S, rst)
                if status != OK:
                    return status, S[2]
                rst = (rst + 1) & 7
                pred[:] = 0
                eobrun = 0
                to_go = interval
            to_go -= 1
        my = m // per_row
        mx = m - my * per_row
        for c in range(ns):
            off, stride, h, v, dct, act = (
                comps[c, 0], comps[c, 1], comps[c, 2], comps[c, 3], comps[c, 4], comps[c, 5]
            )
            if ns == 1:
                h = 1
                v = 1
            for by in range(v):
                for bx in range(h):
                    b = off + (my * v + by) * stride + mx * h + bx
                    if progressive == 0:
                        status, pred[c], S = _block_baseline(data, luts, coef, b, dct, act, pred[c], S)
                    elif ss == 0:
                        if ah == 0:
                            status, pred[c], S = _block_dc_first(data, luts, coef, b, dct, pred[c], al, S)
                        else:
                            bit, S = _bits(data, 1, S)
                            if bit != 0:
                                coef[b, 0] = np.int16(np.int64(coef[b, 0]) | (np.int64(1) << al))
                    elif ah == 0:
                        status, eobrun, S = _block_ac_first(data, luts, coef, b, act, ss, se, al, eobrun, S)
                    else:
                        status, eobrun, S = _block_ac_refine(data, luts, coef, b, act, ss, se, al, eobrun, S)
                    if status != OK:
                        return status, S[2]
        if _overrun(S):
            return ERR_TRUNCATED, S[2]
    return OK, S[2]


def decode_scan(data, start, coef, comps, luts, params) -> tuple[int, int]:
    """Decode one scan into ``coef`` in place; (status, position after the scan's data).

    Status 0 is success; a negative status is a key of ``HUFF_ERRORS``. Any bytes are safe.
    """
    status, end = _decode_scan(data, np.int64(start), coef, comps, luts, params)
    return int(status), int(end)


def build_lut(counts, symbols) -> np.ndarray | None:
    """The 65536-entry lookup table of a Huffman table (T.81 C.2), or None if invalid.

    ``counts[i]`` is the number of codes of length i + 1; ``symbols`` the values in order.
    """
    lut = np.zeros(65536, np.int32)
    code, k = 0, 0
    for length in range(1, 17):
        for _ in range(counts[length - 1]):
            if code >= (1 << length) or k >= len(symbols):
                return None
            lo = code << (16 - length)
            lut[lo : lo + (1 << (16 - length))] = (length << 8) | symbols[k]
            code += 1
            k += 1
        code <<= 1
    return lut
