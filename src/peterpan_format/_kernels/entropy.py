"""Context-modelling binary range coder of the subject pixels: SUBJ codings 3 and 5.

Coding 3 (spec §6.3, ``near`` = 0) is lossless. The planes are those of coding 2 with 128
added to the colour differences. The box is visited in raster order, all planes of a pixel
in turn; each value is MED-predicted and its residual is binarised (zero flag, sign,
exponent in unary, mantissa) into binary decisions that an LZMA-style range coder codes
with adaptive 12-bit probabilities, picked by a small context: the local activity, and for
the colour planes the local texture and the residual of the first colour plane.

Coding 5 (spec/FORMAT.md §6.5, ``near`` = N in 1 … 31) is the same coder made
near-lossless in the manner of JPEG-LS: the colour planes are R − G' and B − G' with G' the
reconstructed G (no offset, no wrap), the residual is quantised to steps of 2N + 1 and the
predictions and contexts read the reconstructed values, so that every channel of every
subject pixel comes back within N of the original. Both codings run through one kernel;
``near`` selects the plane mapping and reconstruction in loop-invariant branches.
"""

import numba
import numpy as np

from ..container import MAX_ERROR
from . import as_box, as_u8, count_set

ERR_CHANNELS = -1
ERR_TRUNCATED = -2
ERR_TRAILING = -3
ERR_NEAR = -4

CM_ERRORS = {
    ERR_CHANNELS: "channels must be 1, 3 or 4",
    ERR_TRUNCATED: "subject stream ends before the last value",
    ERR_TRAILING: "bytes left over after the last subject value",
    ERR_NEAR: "the maximum error must be 0 to 31",
}

#: the largest maximum error (coding 5's N)
NEAR_MAX = MAX_ERROR

PROB_BITS = 12
PROB_ONE = 1 << PROB_BITS
TOP = 1 << 24
MASK32 = 0xFFFFFFFF
COUNT_MAX = 60
#: adaptation shift by the number n of earlier updates of a probability: min(6, floor(log2(n + 4)))
RATE = np.array([2] * 4 + [3] * 8 + [4] * 16 + [5] * 32 + [6], np.int64)
#: activity thresholds: the activity level is the number of these that are <= the activity
LEVELS = np.array([3, 7, 13, 22, 36, 60, 100, 170], np.int64)
NQ = LEVELS.size + 1
ACT_CAP = 255
QTAB = np.searchsorted(LEVELS, np.arange(ACT_CAP + 1), side="right").astype(np.int64)
#: probabilities per context: 0 zero flag, 1..7 exponent (unary), 8..14 top mantissa bit
SLOTS = 16
#: contexts per plane: activity x texture (4) x sign of the first colour plane's residual (3)
PLANE_PROBS = NQ * 4 * 3 * SLOTS
PLANE_SIGNS = 81
#: coding 5 divides 0 … DIV_MAX by its step 2N + 1 as (x · ceil(2^DIV_SHIFT / step)) >> DIV_SHIFT,
#: which is exact there (tests/test_entropy.py checks every case)
DIV_SHIFT = 20
DIV_MAX = 3 * 510
NO_LIMIT = 1 << 62


@numba.njit(cache=True, nogil=True)
def _sgn3(e):
    """0 for zero, 1 for positive, 2 for negative."""
    return (e > 0) + 2 * (e < 0)


@numba.njit(cache=True, nogil=True)
def _med(W, N, NW):
    """The MED (LOCO-I) prediction."""
    mx = max(W, N)
    mn = min(W, N)
    if NW >= mx:
        return mn
    if NW <= mn:
        return mx
    return W + N - NW


@numba.njit(cache=True, nogil=True)
def _div_mul(step):
    """The multiplier that divides 0 … DIV_MAX by ``step`` (odd, 1 … 63)."""
    return -((-1 << DIV_SHIFT) // step)


@numba.njit(cache=True, nogil=True)
def _context(p, W, N, NW, NE, eW, eN, eNW, eNE, colour, u, near, div):
    """(offset of the context's probabilities, offset of the sign probability) (§6.3).

    With ``near`` = N > 0 the gradient part of the activity is divided by 2N + 1, the step
    of the quantised residuals eW … eNE (coding 5); ``div`` is _div_mul(2N + 1).
    """
    grad = abs(W - NW) + abs(N - NW) + abs(N - NE)
    if near:
        grad = (grad * div) >> DIV_SHIFT
    act = grad + abs(eW) + abs(eN) + abs(eNW) + abs(eNE)
    ctx = QTAB[min(act, ACT_CAP)]
    sctx = 3 * _sgn3(eW) + _sgn3(eN) + 9 * _sgn3(eNE + eNW)
    if colour:
        ctx += NQ * ((W == NW) + 2 * (N == NW) + 4 * u)
        sctx += 27 * u
    return p * PLANE_PROBS + ctx * SLOTS, p * PLANE_SIGNS + sctx


# ---------------------------------------------------------------- the model (both sides)
# V and E hold two rows (this one, r, and the one above, a) of values and residuals per
# plane, with a border column on each side; residuals outside the box stay 0.


@numba.njit(inline="always")
def _start_row(V, r, a, w, first_row):
    """Fill the border columns that row r's predictions read (§6.3 edge rules)."""
    for p in range(V.shape[0]):
        if first_row:
            V[p, r, 0] = 0
        else:
            V[p, r, 0] = V[p, a, 1]
            V[p, a, 0] = V[p, a, 1]
            V[p, a, w + 1] = V[p, a, w]


@numba.njit(inline="always")
def _model(V, E, p, r, a, X, first_row, subject, near, div):
    """(prediction, context offset, sign context offset) of plane p at column X; the
    contexts are 0 at a background pixel, which codes nothing."""
    W = V[p, r, X - 1]
    if first_row:
        N = W
        NW = W
        NE = W
    else:
        N = V[p, a, X]
        NW = V[p, a, X - 1]
        NE = V[p, a, X + 1]
    pred = _med(W, N, NW)
    if not subject:
        return pred, 0, 0
    colour = V.shape[0] > 1 and 0 < p < 3
    u = _sgn3(E[1, r, X]) if V.shape[0] > 1 and p == 2 else 0
    ctx, sctx = _context(
        p, W, N, NW, NE, E[p, r, X - 1], E[p, a, X], E[p, a, X - 1], E[p, a, X + 1],
        colour, u, near, div,
    )
    return pred, ctx, sctx


# ---------------------------------------------------------------- decoder


@numba.njit(inline="always")
def _dbit(data, size, pos, rng, code, probs, i):
    v = probs[i]
    p = v & 0xFFFF
    n = v >> 16
    s = RATE[n]
    bound = (rng >> PROB_BITS) * p
    bit = np.int64(code >= bound)
    sel = -bit
    code -= bound & sel
    rng = bound + ((rng - 2 * bound) & sel)
    p += (((PROB_ONE - p) >> s) & ~sel) - ((p >> s) & sel)
    probs[i] = p | ((n + (n < COUNT_MAX)) << 16)
    while rng < TOP:
        byte = data[pos] if pos < size else 0
        pos += 1
        rng = (rng << 8) & MASK32
        code = ((code << 8) | byte) & MASK32
    return bit, pos, rng, code


@numba.njit(cache=True, nogil=True)
def _dbypass(data, size, pos, rng, code):
    rng >>= 1
    bit = np.int64(code >= rng)
    code -= rng & -bit
    while rng < TOP:
        byte = data[pos] if pos < size else 0
        pos += 1
        rng = (rng << 8) & MASK32
        code = ((code << 8) | byte) & MASK32
    return bit, pos, rng, code


@numba.njit(cache=True, nogil=True)
def _reconstruct(pred, e, near, step, g, colour):
    """The reconstructed plane value of a residual e: coding 3 (near = 0) wraps mod 256;
    coding 5 steps e by 2N + 1 and clamps the channel (G' + value for a colour plane, G'
    the reconstructed G) to 0 … 255."""
    if near == 0:
        return (pred + e) & 255
    v = pred + e * step
    if colour:
        return min(max(g + v, 0), 255) - g
    return min(max(v, 0), 255)


@numba.njit(cache=True, nogil=True)
def _cm_decode_lossless(data, mask, out, V, E, probs, sprobs):
    # coding 3: the loop inlined with the constant near = 0, so the compiler drops coding
    # 5's branches (measured: otherwise coding 3 decodes ~5% slower); a kernel of its own,
    # so that a file compiles only the coding it holds
    return _decode_box(data, mask, out, V, E, probs, sprobs, 0)


@numba.njit(cache=True, nogil=True)
def _cm_decode_near(data, mask, out, V, E, probs, sprobs, near):
    return _decode_box(data, mask, out, V, E, probs, sprobs, near)


@numba.njit(inline="always")
def _decode_box(data, mask, out, V, E, probs, sprobs, near):
    h, w, channels = out.shape
    step = 2 * near + 1
    div = _div_mul(step)
    # coding 3 offsets the colour differences by 128 (mod 256); coding 5 keeps G' + value
    # in 0 … 255, so the same expression gives R' and B' in both
    offset = 128 if near == 0 else 0
    size = data.size
    pos = 0
    code = 0
    for _ in range(4):
        byte = data[pos] if pos < size else 0
        pos += 1
        code = (code << 8) | byte
    rng = MASK32
    for y in range(h):
        r = y & 1
        a = r ^ 1
        first_row = y == 0
        _start_row(V, r, a, w, first_row)
        for X in range(1, w + 1):
            subject = mask[y, X - 1] != 0
            for p in range(channels):
                pred, ctx, sctx = _model(V, E, p, r, a, X, first_row, subject, near, div)
                e = np.int64(0)
                if subject:
                    # zero flag, sign, exponent k in unary (at most 7 ones), mantissa
                    bit, pos, rng, code = _dbit(data, size, pos, rng, code, probs, ctx)
                    if bit:
                        neg, pos, rng, code = _dbit(data, size, pos, rng, code, sprobs, sctx)
                        k = 0
                        while k < 7:
                            bit, pos, rng, code = _dbit(data, size, pos, rng, code, probs, ctx + 1 + k)
                            if bit == 0:
                                break
                            k += 1
                        m = np.int64(1)
                        if k > 0:
                            bit, pos, rng, code = _dbit(data, size, pos, rng, code, probs, ctx + 7 + k)
                            m = 2 + bit
                            for _ in range(k - 1):
                                bit, pos, rng, code = _dbypass(data, size, pos, rng, code)
                                m = 2 * m + bit
                        e = (m ^ -neg) + neg
                V[p, r, X] = _reconstruct(pred, e, near, step, V[0, r, X], channels > 1 and 0 < p < 3)
                E[p, r, X] = e
            if pos > size:  # a byte past the end was needed: stop now (§6.3)
                return ERR_TRUNCATED
            if channels == 1:
                out[y, X - 1, 0] = V[0, r, X]
            else:
                g = V[0, r, X]
                out[y, X - 1, 0] = (V[1, r, X] + g - offset) & 255
                out[y, X - 1, 1] = g
                out[y, X - 1, 2] = (V[2, r, X] + g - offset) & 255
                if channels == 4:
                    out[y, X - 1, 3] = V[3, r, X]
    if pos > size:
        return ERR_TRUNCATED
    if pos < size:
        return ERR_TRAILING
    return 0


def _model_state(channels: int, w: int):
    """Zeroed value and residual rows (V, E) and the probabilities (1/2) of a w-wide box."""
    return (np.zeros((channels, 2, w + 2), np.int64), np.zeros((channels, 2, w + 2), np.int64),
            np.full(channels * PLANE_PROBS, PROB_ONE // 2, np.int64),
            np.full(channels * PLANE_SIGNS, PROB_ONE // 2, np.int64))


# ---------------------------------------------------------------- encoder
# The encoder runs the model over a row first, writing each decision as 12-bit
# probability | bit << 12 (probability 0: a bypass bit), then range-codes the row's
# decisions in one tight loop.


@numba.njit(cache=True, nogil=True)
def _emit(probs, i, bit, dec, nd):
    v = probs[i]
    p = v & 0xFFFF
    n = v >> 16
    s = RATE[n]
    dec[nd] = p | (bit << PROB_BITS)
    sel = -np.int64(bit)
    p += (((PROB_ONE - p) >> s) & ~sel) - ((p >> s) & sel)
    probs[i] = p | ((n + (n < COUNT_MAX)) << 16)
    return nd + 1


@numba.njit(cache=True, nogil=True)
def _rc_encode(dec, nd, out, st):
    """Range-code decisions dec[:nd] into out; st = [low, range, cache, cache size, pos]."""
    low, rng, cache, csize, pos = st[0], st[1], st[2], st[3], st[4]
    for i in range(nd):
        d = np.int64(dec[i])
        p = d & (PROB_ONE - 1)
        bit = d >> PROB_BITS
        if p == 0:
            rng >>= 1
            if bit:
                low += rng
        else:
            bound = (rng >> PROB_BITS) * p
            if bit:
                low += bound
                rng -= bound
            else:
                rng = bound
        while rng < TOP:
            rng = (rng << 8) & MASK32
            low, cache, csize, pos = _shift_low(out, low, cache, csize, pos)
    st[0], st[1], st[2], st[3], st[4] = low, rng, cache, csize, pos


@numba.njit(cache=True, nogil=True)
def _shift_low(out, low, cache, csize, pos):
    """LZMA's ShiftLow: emit the pending byte (and 0xFF run) once its carry is known."""
    if low < 0xFF000000 or low > MASK32:
        carry = low >> 32
        temp = cache
        while True:
            out[pos] = (temp + carry) & 255
            pos += 1
            temp = 0xFF
            csize -= 1
            if csize == 0:
                break
        cache = (low >> 24) & 255
    csize += 1
    return (low & 0x00FFFFFF) << 8, cache, csize, pos


@numba.njit(cache=True, nogil=True)
def _rc_flush(out, st):
    """Five more byte shifts push out the pending bytes and the 4 bytes of low."""
    low, cache, csize, pos = st[0], st[2], st[3], st[4]
    for _ in range(5):
        low, cache, csize, pos = _shift_low(out, low, cache, csize, pos)
    st[0], st[2], st[3], st[4] = low, cache, csize, pos


@numba.njit(cache=True, nogil=True)
def _grow(out, need):
    if need <= out.size:
        return out
    bigger = np.empty(max(need, 2 * out.size), np.uint8)
    bigger[: out.size] = out
    return bigger


@numba.njit(cache=True, nogil=True)
def _cm_encode_lossless(pixels, mask, limit, V, E, probs, sprobs):
    return _encode_box(pixels, mask, 0, limit, V, E, probs, sprobs)  # as in _cm_decode_lossless


@numba.njit(cache=True, nogil=True)
def _cm_encode_near(pixels, mask, near, limit, V, E, probs, sprobs):
    return _encode_box(pixels, mask, near, limit, V, E, probs, sprobs)


@numba.njit(inline="always")
def _encode_box(pixels, mask, near, limit, V, E, probs, sprobs):
    h, w, channels = pixels.shape
    step = 2 * near + 1
    div = _div_mul(step)
    out = np.empty(channels * count_set(mask) // 2 + 64, np.uint8)
    st = np.array([0, MASK32, 0, 1, 0], np.int64)
    # a value takes at most 1 + 1 + 7 + 1 + 6 = 16 decisions
    dec = np.empty(16 * channels * w, np.uint16)
    values = np.zeros(4, np.int64)
    for y in range(h):
        r = y & 1
        a = r ^ 1
        first_row = y == 0
        _start_row(V, r, a, w, first_row)
        nd = 0
        for X in range(1, w + 1):
            subject = mask[y, X - 1] != 0
            if channels == 1:
                values[0] = pixels[y, X - 1, 0]
            elif near == 0:
                g = np.int64(pixels[y, X - 1, 1])
                values[0] = g
                values[1] = (np.int64(pixels[y, X - 1, 0]) - g + 128) & 255
                values[2] = (np.int64(pixels[y, X - 1, 2]) - g + 128) & 255
                values[3] = pixels[y, X - 1, channels - 1]
            else:  # R and B here; R - G' and B - G' once G' is known
                values[0] = pixels[y, X - 1, 1]
                values[1] = pixels[y, X - 1, 0]
                values[2] = pixels[y, X - 1, 2]
                values[3] = pixels[y, X - 1, channels - 1]
            for p in range(channels):
                colour = channels > 1 and 0 < p < 3
                pred, ctx, sctx = _model(V, E, p, r, a, X, first_row, subject, near, div)
                e = np.int64(0)
                if subject:
                    if near == 0:
                        e = ((values[p] - pred + 128) & 255) - 128
                    else:
                        d = values[p] - (V[0, r, X] if colour else 0) - pred
                        e = ((abs(d) + near) * div) >> DIV_SHIFT
                        if d < 0:
                            e = -e
                    nd = _emit(probs, ctx, e != 0, dec, nd)
                    if e != 0:
                        nd = _emit(sprobs, sctx, e < 0, dec, nd)
                        m = abs(e)
                        k = 0
                        while (m >> (k + 1)) != 0:
                            k += 1
                        for i in range(min(k + 1, 7)):
                            nd = _emit(probs, ctx + 1 + i, i < k, dec, nd)
                        if k > 0:
                            nd = _emit(probs, ctx + 7 + k, (m >> (k - 1)) & 1, dec, nd)
                            for j in range(k - 2, -1, -1):
                                dec[nd] = ((m >> j) & 1) << PROB_BITS
                                nd += 1
                V[p, r, X] = _reconstruct(pred, e, near, step, V[0, r, X], colour)
                E[p, r, X] = e
        # a decision shifts out at most 2 bytes (p >= 1 keeps range >= 2^12); the pending
        # bytes (cache size) are written at the latest with them
        out = _grow(out, st[4] + st[3] + 2 * nd + 16)
        _rc_encode(dec, nd, out, st)
        if st[4] > limit + 1:  # already longer than the caller can use
            return out[:0].copy()
    out = _grow(out, st[4] + st[3] + 8)
    _rc_flush(out, st)
    return out[1 : st[4]].copy()


def _check_near(near) -> int:
    if isinstance(near, bool) or not isinstance(near, (int, np.integer)) or not 0 <= near <= NEAR_MAX:
        raise ValueError(f"near must be an integer 0 to {NEAR_MAX}, not {near!r}")
    return int(near)


def cm_encode(pixels, mask, near: int = 0, limit: int | None = None):
    """The range-coded stream (uint8) of a box crop uint8[h, w, C] (C = 1, 3, 4).

    ``mask`` is the uint8[h, w] mask crop (nonzero = subject). ``near`` = 0 gives SUBJ
    coding 3 (lossless); ``near`` = N in 1 … 31 gives the stream of SUBJ coding 5 (without
    its leading byte N), whose decoded subject pixels are within N of ``pixels`` in every
    channel. With a ``limit``, coding stops as soon as the stream is longer than ``limit``
    bytes, and None is returned (the caller has a smaller coding).
    """
    cap = NO_LIMIT if limit is None else int(limit)
    pixels, mask = as_box(pixels, mask)
    near = _check_near(near)
    state = _model_state(pixels.shape[2], pixels.shape[1])
    if near == 0:
        out = _cm_encode_lossless(pixels, mask, np.int64(cap), *state)
    else:
        out = _cm_encode_near(pixels, mask, near, np.int64(cap), *state)
    return None if out.size == 0 or out.size > cap else out  # a finished stream has >= 4 bytes


def cm_decode(data, mask, channels: int, near: int = 0) -> tuple[np.ndarray, int]:
    """Decode a SUBJ coding 3 (``near`` = 0) or 5 (``near`` = N) stream into
    (uint8[h, w, channels] values, status).

    Status 0 means success; a negative status is a key of ``CM_ERRORS`` (``near`` outside
    0 … 31 is ERR_NEAR). Values at background pixels of the box are the predictions of §6.3
    (coding 5: reconstructed with a zero residual). Any input bytes are safe: the work is
    bounded by channels x h x w values, nothing past ``data`` is read, and decoding stops
    at the pixel that needs a byte the stream does not have.
    """
    data, mask = as_u8(data, 1, "data"), as_u8(mask, 2, "mask")
    h, w = mask.shape
    if channels not in (1, 3, 4):
        return np.zeros((h, w, 0), np.uint8), ERR_CHANNELS
    if not 0 <= near <= NEAR_MAX:
        return np.zeros((h, w, 0), np.uint8), ERR_NEAR
    out = np.empty((h, w, channels), np.uint8)
    state = _model_state(channels, w)
    if near == 0:
        status = _cm_decode_lossless(data, mask, out, *state)
    else:
        status = _cm_decode_near(data, mask, out, *state, int(near))
    return out, int(status)
