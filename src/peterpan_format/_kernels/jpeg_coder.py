"""Context-modelling binary arithmetic coding of JPEG coefficient blocks (spec/FORMAT.md §6.4.5),
and the value mapping of coder 1 (§6.4.4: ``add_escapes``, ``unmap_values``).

One kernel, ``_code_blocks``, both encodes (mode 0) and decodes (mode 1): every binary
decision goes through ``_code_p``, which codes the given bit or returns the decoded one,
so encoder and decoder follow the same model by construction. ``mode`` is a compile-time
constant (the kernels ``_encode_blocks`` and ``_decode_blocks`` pass it as a literal):
encoder and decoder are compiled apart, each without the other's branches, so a file's
first decode compiles only the decoder. Everything is integer
arithmetic, so the two agree on every platform.

- Range coder: LZMA's binary range coder (32-bit range, carry propagation through a
  cached byte) with 16-bit probabilities: bound = (range >> 16) * P(bit = 1).
- Adaptive contexts: P (1/65536 units) and a count n; after a bit,
  P += ((bit << 16) - P) * RATE[n] >> 16, RATE[n] = 65536 // (n + 2), n capped at 60.
- Mixing (zero flags and exponent bits): three contexts' probabilities are combined in the
  logistic domain by an online-trained weight set (as in PAQ), integer squash / stretch.
- Model, per component, blocks in raster order, only the kept ones: the count of nonzero
  interior (7x7) coefficients, those coefficients in zigzag order (contexts: position,
  nonzeros left, magnitudes of the same coefficient in the left / upper / upper-left
  blocks and of the adjacent coefficients in the block), then the left-edge column and
  the top-edge row, each predicted from the neighbour block across that edge by
  continuity of the DCT basis at the boundary (Lakhani / Lepton style), then the DC as
  a residual from the same boundary prediction.

The kernel never raises and reads only inside its arrays: a decoder that runs out of
input reads zeros and reports it; every decoded value is range-checked.
"""

import numba
import numpy as np

from . import threads
from .jpeg_huffman import ZIGZAG

OK = 0
ERR_OVERFLOW = -1  # output buffer full (encoder): retry with a larger one
ERR_TRUNCATED = -2  # decoder read past the end of its input
ERR_RANGE = -3  # a decoded value is not a valid int16 coefficient
ERR_PARAMS = -4
ERR_TRAILING = -5  # decoder did not consume its whole input

CODER_ERRORS = {
    ERR_OVERFLOW: "output buffer too small",
    ERR_TRUNCATED: "coefficient stream ends early",
    ERR_RANGE: "decoded coefficient out of range",
    ERR_PARAMS: "invalid parameters",
    ERR_TRAILING: "bytes after the end of the coefficient stream",
}

# ---------------------------------------------------------------- model constants

RATE_LIMIT = 120
RATE = np.array([65536 // (n + 3) for n in range(RATE_LIMIT + 1)], np.int64)
P_MIN, P_MAX = 64, 65536 - 64
MAX_EXP = 17  # exponents 1..17 (DC residuals reach 2^17 - 1)
SQRT2_Q13 = 11585  # round(sqrt(2) * 2^13)
MIX_RATE = 10
MIX_SHIFT = 13
W_INIT = 29491  # initial weight of each of the three model inputs (0.45)
W_DIRECT = 16384  # initial weight of the direct input (0.25)
NO_GUESS = -1000

# The 49 interior coefficients (row >= 1 and column >= 1) in zigzag order, with a band
# (zigzag index // 5, at most 9) each; the edges are column 0 and row 0, rows / columns 1..7.
INTERIOR = np.array([z for z in ZIGZAG if z >= 8 and z % 8 != 0], np.int64)
INTERIOR_BAND = np.array([min(int(np.flatnonzero(ZIGZAG == z)[0]) // 5, 9) for z in INTERIOR], np.int64)
N_BANDS = 10
# Interior nonzero count of a neighbour block (0..63) -> 1..13 (0 means no neighbour).
NZ_BUCKET = np.array([1, 2, 3, 4, 5, 6, 6, 7, 7, 8, 8, 8, 9, 9, 9, 9] + [10] * 8 + [11] * 8 + [12] * 16 + [13] * 16,
                     np.int64)
NZ_BUCKETS = 14
# Nonzeros still to code (0..63) -> 0..9.
NZR_BUCKET = np.array([0, 0, 1, 2, 3, 4, 4, 5, 5, 5, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7] + [8] * 17 + [9] * 24,
                      np.int64)
NZR_BUCKETS = 10
M_BUCKETS = 11  # neighbour prior: bit length 0..9 (capped), 10 = no neighbour
I_BUCKETS = 7  # adjacent coefficients in the same block: bit length 0..6 (capped)
P_BUCKETS = 12  # edge prediction: 0 = none, else 1 + min(bit length of |p|, 10)
S_HINTS = 5  # edge prediction sign: none or 0, +1, >= +2, -1, <= -2
DC_ACT = 15  # DC: 0..12 disagreement of the two predictions, 13 one neighbour, 14 none
DC_RES = 17  # neighbours' DC residual exponents: 0..15 averaged, 16 none
E1 = MAX_EXP + 1  # unary exponent slots including "exponent > 0"

# Context regions: name -> size. Region offsets follow in this order.
CONTEXT_SIZES = {
    "NZ7A": 2 * NZ_BUCKETS * 64,  # (class, neighbours' average bucket, tree node)
    "NZ7B": NZ_BUCKETS * NZ_BUCKETS * 64,  # (left bucket, upper bucket, node)
    "NZ7C": 2 * 64,  # (class, node)
    "IZ1": N_BANDS * NZR_BUCKETS * M_BUCKETS,  # interior zero flag: (band, nonzeros left, prior)
    "IZ2": 49 * NZR_BUCKETS * I_BUCKETS,  # (position, nonzeros left, in-block)
    "IZ3": N_BANDS * M_BUCKETS * I_BUCKETS,  # (band, prior, in-block)
    "IE1": N_BANDS * M_BUCKETS * MAX_EXP,  # interior exponent bit j: (band, prior, j)
    "IE2": N_BANDS * I_BUCKETS * MAX_EXP,  # (band, in-block, j)
    "IE3": N_BANDS * NZR_BUCKETS * MAX_EXP,  # (band, nonzeros left, j)
    "MANT": 11 * E1 * 2,  # (interior 0..5 / edge 6..10 relation to the prior, exponent, bit)
    "NZEA": 2 * 7 * 9 * 8,  # edge count: (edge, interior count bit length, predicted nonzeros, node)
    "NZEB": 2 * 9 * 9 * 8,  # (edge, predicted nonzeros, the neighbour's count of that edge, node)
    "NZEC": 2 * 2 * NZ_BUCKETS * 8,  # (class, edge, interior count bucket, node)
    "EZ1": 2 * 7 * 7 * P_BUCKETS,  # edge zero flag: (edge, position, nonzeros left - 1, prediction)
    "EZ2": 2 * 7 * M_BUCKETS,  # (edge, position, prior)
    "EZ3": 2 * 7 * P_BUCKETS * I_BUCKETS,  # (edge, position, prediction, in-block)
    "EE1": 2 * P_BUCKETS * MAX_EXP,  # edge exponent bit j: (edge, prediction, j)
    "EE2": 2 * M_BUCKETS * MAX_EXP,  # (edge, prior, j)
    "EE3": 2 * 7 * 7 * MAX_EXP,  # (edge, position, nonzeros left after this one, j)
    "ESIGN": 2 * S_HINTS,  # (edge, predicted sign)
    "DC1": 2 * DC_ACT * E1,  # DC exponent (0 = zero residual) bit j: (class, activity, j)
    "DC2": 2 * NZ_BUCKETS * E1,  # (class, interior count bucket, j)
    "DC3": 2 * DC_RES * E1,  # (class, neighbours' residual exponents, j)
    "DCM": 2 * E1 * 2,  # DC mantissa: (class, exponent, top or second bit)
    "DCS": 2 * DC_ACT,  # DC sign: (class, activity)
}
OFFSETS = {}
_off = 0
for _name, _size in CONTEXT_SIZES.items():
    OFFSETS[_name] = _off
    _off += _size
N_CONTEXTS = _off
OFF_NZ7A, OFF_NZ7B, OFF_NZ7C = OFFSETS["NZ7A"], OFFSETS["NZ7B"], OFFSETS["NZ7C"]
OFF_IZ1, OFF_IZ2, OFF_IZ3 = OFFSETS["IZ1"], OFFSETS["IZ2"], OFFSETS["IZ3"]
OFF_IE1, OFF_IE2, OFF_IE3 = OFFSETS["IE1"], OFFSETS["IE2"], OFFSETS["IE3"]
OFF_MANT = OFFSETS["MANT"]
OFF_NZEA, OFF_NZEB, OFF_NZEC = OFFSETS["NZEA"], OFFSETS["NZEB"], OFFSETS["NZEC"]
OFF_EZ1, OFF_EZ2, OFF_EZ3 = OFFSETS["EZ1"], OFFSETS["EZ2"], OFFSETS["EZ3"]
OFF_EE1, OFF_EE2, OFF_EE3 = OFFSETS["EE1"], OFFSETS["EE2"], OFFSETS["EE3"]
OFF_ESIGN = OFFSETS["ESIGN"]
OFF_DC1, OFF_DC2, OFF_DC3, OFF_DCM, OFF_DCS = (OFFSETS[n] for n in ("DC1", "DC2", "DC3", "DCM", "DCS"))

# Mixer weight sets: name -> count, in this order.
MIXER_SIZES = {
    "NZ7": 2 * 6,  # (class, tree depth)
    "IZ": N_BANDS,  # (band)
    "IE": MAX_EXP,  # (exponent bit j - 1)
    "NZE": 2 * 2 * 3,  # (class, edge, tree depth)
    "EZ": 2,  # (edge)
    "EE": 2 * MAX_EXP,  # (edge, j - 1)
    "DC": 2 * E1,  # (class, j)
}
MIXERS = {}
_off = 0
for _name, _size in MIXER_SIZES.items():
    MIXERS[_name] = _off
    _off += _size
N_MIXERS = _off
W_NZ7, W_IZ, W_IE, W_NZE, W_EZ, W_EE, W_DC = (MIXERS[n] for n in MIXER_SIZES)
MIX_INPUTS = 5  # three models, a bias (256) and a direct input

# Logistic mixing in integers (as in PAQ): squash(d) = 4096 / (1 + e^(-d / 256)) by linear
# interpolation of a 33-entry table, stretch = its inverse (the smallest d with
# squash(d) >= p), so encoder and decoder agree bit for bit on every platform.
SQUASH_KNOTS = np.array([1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546, 2047, 2549, 2994,
                         3348, 3607, 3785, 3901, 3975, 4022, 4050, 4068, 4079, 4085, 4089, 4092, 4093, 4094], np.int64)


def _squash_py(d: int) -> int:
    if d > 2047:
        d = 2047
    if d < -2047:
        d = -2047
    w = d & 127
    i = (d >> 7) + 16
    return int((SQUASH_KNOTS[i] * (128 - w) + SQUASH_KNOTS[i + 1] * w + 64) >> 7)


SQUASH = np.array([_squash_py(d) for d in range(-2047, 2048)], np.int64)  # index d + 2047
STRETCH = np.empty(4096, np.int64)
_pi = 0
for _d in range(-2047, 2048):
    _v = int(SQUASH[_d + 2047])
    STRETCH[_pi : _v + 1] = _d
    _pi = max(_pi, _v + 1)
STRETCH[_pi:] = 2047
del _pi, _d, _v

# The direct input of a zero flag, stretch(rem * 4096 // (positions left)), as tables: the
# division was the coder's costliest instruction.
DIRECT_INTERIOR = np.array([[STRETCH[min(r * 4096 // (49 - i), 4095)] for i in range(49)] for r in range(50)],
                           np.int64)
DIRECT_EDGE = np.array([[STRETCH[min(r * 4096 // (8 - t), 4095)] if t else 0 for t in range(8)] for r in range(8)],
                       np.int64)

BITLEN = np.array([int(v).bit_length() for v in range(4096)], np.uint8)

# State vector of the range coder.
_LOW, _RANGE, _CACHE, _CSIZE, _POS, _CODE, _FLAG = 0, 1, 2, 3, 4, 5, 6
ENCODE, DECODE = 0, 1  # the ``mode`` of the kernels


@numba.njit(cache=True, nogil=True)
def _shift_low(st, buf):
    low = st[_LOW]
    if low < 0xFF000000 or low >= 0x100000000:
        carry = low >> 32
        temp = st[_CACHE]
        while True:
            p = st[_POS]
            if p < buf.shape[0]:
                buf[p] = (temp + carry) & 0xFF
            else:
                st[_FLAG] = 1
            st[_POS] = p + 1
            temp = 0xFF
            st[_CSIZE] -= 1
            if st[_CSIZE] == 0:
                break
        st[_CACHE] = (low >> 24) & 0xFF
    st[_CSIZE] += 1
    st[_LOW] = (low & 0x00FFFFFF) << 8


@numba.njit(cache=True, nogil=True)
def _next_byte(st, buf):
    p = st[_POS]
    st[_POS] = p + 1
    if p < buf.shape[0]:
        return np.int64(buf[p])
    st[_FLAG] = 1
    return np.int64(0)


@numba.njit(cache=True, nogil=True, inline="always")
def _code_p(st, buf, mode, p, bit):
    """Code ``bit`` (mode ENCODE) or return the decoded bit (DECODE) with P(1) = p / 65536."""
    bound = (st[_RANGE] >> 16) * p
    if mode == ENCODE:
        if bit:
            st[_RANGE] = bound
        else:
            st[_LOW] += bound
            st[_RANGE] -= bound
        while st[_RANGE] < 0x1000000:
            st[_RANGE] <<= 8
            _shift_low(st, buf)
        return bit
    if st[_CODE] < bound:
        st[_RANGE] = bound
        bit = 1
    else:
        st[_CODE] -= bound
        st[_RANGE] -= bound
        bit = 0
    while st[_RANGE] < 0x1000000:
        st[_RANGE] <<= 8
        st[_CODE] = ((st[_CODE] << 8) | _next_byte(st, buf)) & 0xFFFFFFFF
    return bit


@numba.njit(cache=True, nogil=True)
def _adapt(probs, counts, ctx, bit):
    p = np.int64(probs[ctx])
    n = np.int64(counts[ctx])
    if bit:
        p += ((65536 - p) * RATE[n]) >> 16
    else:
        p -= (p * RATE[n]) >> 16
    probs[ctx] = min(max(p, P_MIN), P_MAX)
    if n < RATE_LIMIT:
        counts[ctx] = n + 1


@numba.njit(cache=True, nogil=True)
def _bit(st, buf, mode, probs, counts, ctx, bit):
    """Code one bit with the adaptive context ``ctx``."""
    bit = _code_p(st, buf, mode, np.int64(probs[ctx]), bit)
    _adapt(probs, counts, ctx, bit)
    return bit


@numba.njit(cache=True, nogil=True, inline="always")
def _mix(st, buf, mode, probs, counts, weights, c1, c2, c3, w, s4, bit):
    """Code a bit whose probability mixes contexts c1, c2, c3 (and the direct input s4, a
    stretched probability, 0 if none) with weight set ``w``."""
    s1 = STRETCH[probs[c1] >> 4]
    s2 = STRETCH[probs[c2] >> 4]
    s3 = STRETCH[probs[c3] >> 4]
    dot = (weights[w, 0] * s1 + weights[w, 1] * s2 + weights[w, 2] * s3 + weights[w, 3] * 256
           + weights[w, 4] * s4) >> 16
    dot = min(max(dot, -2047), 2047)
    pm = SQUASH[dot + 2047]
    bit = _code_p(st, buf, mode, min(max(pm * 16, P_MIN), P_MAX), bit)
    err = ((bit << 12) - pm) * MIX_RATE
    weights[w, 0] += (s1 * err) >> MIX_SHIFT
    weights[w, 1] += (s2 * err) >> MIX_SHIFT
    weights[w, 2] += (s3 * err) >> MIX_SHIFT
    weights[w, 3] += (256 * err) >> MIX_SHIFT
    weights[w, 4] += (s4 * err) >> MIX_SHIFT
    _adapt(probs, counts, c1, bit)
    _adapt(probs, counts, c2, bit)
    _adapt(probs, counts, c3, bit)
    return bit


@numba.njit(cache=True, nogil=True)
def _bitlen(v):
    """Number of bits of v >= 0 (0 for 0), at most 40."""
    if v < 4096:
        return np.int64(BITLEN[v]) if v > 0 else np.int64(0)
    n = 12
    v >>= 12
    while v > 0 and n < 40:
        v >>= 1
        n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _tree(st, buf, mode, probs, counts, weights, b1, b2, b3, w, nbits, value):
    """Code ``value`` (0 .. 2^nbits - 1) MSB first; tree node n (1 ..) at depth d mixes
    contexts b1 + n, b2 + n, b3 + n with weight set w + d."""
    node = np.int64(1)
    for d in range(nbits):
        bit = (value >> (nbits - 1 - d)) & 1
        node = 2 * node + _mix(st, buf, mode, probs, counts, weights, b1 + node, b2 + node, b3 + node, w + d, 0, bit)
    return node - (np.int64(1) << nbits)


@numba.njit(cache=True, nogil=True)
def _exponent(st, buf, mode, probs, counts, weights, c1, c2, c3, w, first, e, guess):
    """Code e >= first in unary: bits "e > j" for j = first, first + 1, ... (at most up to
    MAX_EXP - 1), bit j mixing contexts c1 + j, c2 + j, c3 + j with weight set w + j and
    the direct input (guess - j) * 384 (an expected exponent; NO_GUESS: none)."""
    j = np.int64(first)
    while j < MAX_EXP:
        s4 = 0 if guess == NO_GUESS else min(max((guess - j) * 384, -2047), 2047)
        if _mix(st, buf, mode, probs, counts, weights, c1 + j, c2 + j, c3 + j, w + j, s4, 1 if e > j else 0) == 0:
            break
        j += 1
    return j


@numba.njit(cache=True, nogil=True)
def _mantissa(st, buf, mode, probs, counts, ctx, a, e):
    """Code the e - 1 bits of a below its leading one: the top two with contexts
    ctx + 2e and ctx + 2e + 1, the others at P = 1/2. Returns a."""
    m = np.int64(1)
    for b in range(e - 2, -1, -1):
        bit = (a >> b) & 1
        if b >= e - 3:
            bit = _bit(st, buf, mode, probs, counts, ctx + 2 * e + (e - 2 - b), bit)
        else:
            bit = _code_p(st, buf, mode, 32768, bit)
        m = (m << 1) | bit
    return m


@numba.njit(cache=True, nogil=True)
def _prior(coef, left, up, upleft, upright, z):
    """Bucket of the neighbours' magnitude of coefficient z: 0..9, or 10 if no neighbour."""
    if left >= 0 and up >= 0 and upleft >= 0 and upright >= 0:
        pr = ((13 * (abs(np.int64(coef[left, z])) + abs(np.int64(coef[up, z])))
               + 6 * (abs(np.int64(coef[upleft, z])) + abs(np.int64(coef[upright, z])))) * 27) >> 9
    elif left >= 0 and up >= 0 and upleft >= 0:
        pr = (13 * (abs(np.int64(coef[left, z])) + abs(np.int64(coef[up, z])))
              + 6 * abs(np.int64(coef[upleft, z]))) >> 4
    elif left >= 0 and up >= 0:
        pr = abs(np.int64(coef[left, z])) + abs(np.int64(coef[up, z]))
    elif left >= 0:
        pr = 2 * abs(np.int64(coef[left, z]))
    elif up >= 0:
        pr = 2 * abs(np.int64(coef[up, z]))
    else:
        return 10
    return min(_bitlen(pr), 9)


@numba.njit(cache=True, nogil=True)
def _rdiv(a, q):
    """a / q rounded to nearest, halves up (q >= 1)."""
    return (2 * a + q) // (2 * q)


@numba.njit(cache=True, nogil=True)
def _boundary(coef, qt, b, nb, zero, step):
    """Dequantised prediction of coefficient ``zero`` of block b from block nb across their
    common edge, with D = coef * q and the coefficients zero + step * t, t = 1..7:
    D_nb(zero) + sqrt(2) * sum_t ((-1)^t D_nb(zero + step t) - D_b(zero + step t))."""
    s = np.int64(0)
    for t in range(1, 8):
        z = zero + step * t
        q = np.int64(qt[z])
        d = np.int64(coef[nb, z]) * q
        s += (d if t % 2 == 0 else -d) - np.int64(coef[b, z]) * q
    return np.int64(coef[nb, zero]) * np.int64(qt[zero]) + ((s * SQRT2_Q13 + 4096) >> 13)


@numba.njit(cache=True, nogil=True)
def _code_blocks(coef, index, comps, qts, buf, st, probs, counts, weights, nz7, nze, dcr, mode):
    """Encode (``mode`` ENCODE) or decode (DECODE) the kept blocks; returns a status.

    ``nz7``, ``nze``, ``dcr``: per coded block (row of ``coef``), its interior nonzero
    count, the nonzero counts of its left and top edges and its DC residual exponent, as
    the model's later blocks read them."""
    nblocks = coef.shape[0]
    if (coef.shape[1] != 64 or probs.shape[0] < N_CONTEXTS or counts.shape[0] < N_CONTEXTS
            or weights.shape[0] < N_MIXERS or weights.shape[1] < MIX_INPUTS or comps.shape[1] < 5
            or qts.shape[1] != 64 or nz7.shape[0] < nblocks or nze.shape[0] < nblocks or nze.shape[1] != 2
            or dcr.shape[0] < nblocks):
        return ERR_PARAMS
    for c in range(comps.shape[0]):
        off, nby, nbx, cc, t = comps[c, 0], comps[c, 1], comps[c, 2], comps[c, 3], comps[c, 4]
        if off < 0 or nby < 0 or nbx < 0 or off + nby * nbx > index.shape[0] or cc < 0 or t < 0 or t >= qts.shape[0]:
            return ERR_PARAMS
        for i in range(off, off + nby * nbx):
            if index[i] >= nblocks:
                return ERR_PARAMS
    decoding = mode == DECODE
    preds = np.zeros(8, np.int64)
    for c in range(comps.shape[0]):
        off, nby, nbx = comps[c, 0], comps[c, 1], comps[c, 2]
        cc = min(comps[c, 3], 1)
        qt = qts[comps[c, 4]]
        q00 = max(np.int64(qt[0]), 1)
        last_dc = np.int64(0)
        for by in range(nby):
            for bx in range(nbx):
                b = index[off + by * nbx + bx]
                if b < 0:
                    continue
                row = off + by * nbx
                left = index[row + bx - 1] if bx > 0 else -1
                up = index[row - nbx + bx] if by > 0 else -1
                upleft = index[row - nbx + bx - 1] if bx > 0 and by > 0 else -1
                upright = index[row - nbx + bx + 1] if bx + 1 < nbx and by > 0 else -1

                # ---- interior 7x7: nonzero count, then the coefficients in zigzag order
                n = np.int64(0)
                if not decoding:
                    for i in range(49):
                        n += coef[b, INTERIOR[i]] != 0
                bl = NZ_BUCKET[nz7[left]] if left >= 0 else 0
                bu = NZ_BUCKET[nz7[up]] if up >= 0 else 0
                if left >= 0 and up >= 0:
                    bavg = NZ_BUCKET[(nz7[left] + nz7[up] + 1) >> 1]
                else:
                    bavg = max(bl, bu)
                n = _tree(st, buf, mode, probs, counts, weights, OFF_NZ7A + (cc * NZ_BUCKETS + bavg) * 64,
                          OFF_NZ7B + (bl * NZ_BUCKETS + bu) * 64, OFF_NZ7C + cc * 64, W_NZ7 + cc * 6, np.int64(6), n)
                if n > 49:
                    return ERR_RANGE
                nz7[b] = n
                rem = n
                for i in range(49):
                    if rem == 0:
                        break
                    z = INTERIOR[i]
                    v = np.int64(0) if decoding else np.int64(coef[b, z])
                    mb = _prior(coef, left, up, upleft, upright, z)
                    ia = np.int64(0)
                    if z >= 16:  # the coefficient above, if interior
                        ia += abs(np.int64(coef[b, z - 8]))
                    if z % 8 >= 2:  # the coefficient to the left, if interior
                        ia += abs(np.int64(coef[b, z - 1]))
                    ib = min(_bitlen(ia), I_BUCKETS - 1)
                    nzb = NZR_BUCKET[rem]
                    band = INTERIOR_BAND[i]
                    if rem < 49 - i:  # otherwise every remaining coefficient is nonzero
                        c1 = OFF_IZ1 + (band * NZR_BUCKETS + nzb) * M_BUCKETS + mb
                        c2 = OFF_IZ2 + (i * NZR_BUCKETS + nzb) * I_BUCKETS + ib
                        c3 = OFF_IZ3 + (band * M_BUCKETS + mb) * I_BUCKETS + ib
                        direct = DIRECT_INTERIOR[rem, i]
                        if _mix(st, buf, mode, probs, counts, weights, c1, c2, c3, W_IZ + band, direct,
                                1 if v != 0 else 0) == 0:
                            continue
                    rem -= 1
                    e = _exponent(
                        st, buf, mode, probs, counts, weights,
                        OFF_IE1 + (band * M_BUCKETS + mb) * MAX_EXP - 1,
                        OFF_IE2 + (band * I_BUCKETS + ib) * MAX_EXP - 1,
                        OFF_IE3 + (band * NZR_BUCKETS + nzb) * MAX_EXP - 1,
                        W_IE - 1, np.int64(1), _bitlen(abs(v)), mb - 1 if mb < 10 else NO_GUESS,
                    )  # fmt: skip
                    rel = 5 if mb == 10 else min(max(mb - e + 2, 0), 4)
                    a = _mantissa(st, buf, mode, probs, counts, OFF_MANT + rel * E1 * 2, abs(v), e)
                    neg = _code_p(st, buf, mode, 32768, 1 if v < 0 else 0)
                    if decoding:
                        if a > 32768 or (a == 32768 and neg == 0):
                            return ERR_RANGE
                        coef[b, z] = -a if neg else a

                # ---- edges: 0 = left column (from the left block), 1 = top row (from the upper)
                for edge in range(2):
                    step = 8 if edge == 0 else 1  # from one edge coefficient to the next
                    across = 1 if edge == 0 else 8  # into the interior
                    nb = left if edge == 0 else up
                    npred = 8
                    if nb >= 0:
                        npred = 0
                        for t in range(1, 8):
                            z = step * t
                            preds[t] = _rdiv(_boundary(coef, qt, b, nb, z, across), max(np.int64(qt[z]), 1))
                            npred += preds[t] != 0
                    n = np.int64(0)
                    if not decoding:
                        for t in range(1, 8):
                            n += coef[b, step * t] != 0
                    nbc = nze[nb, edge] if nb >= 0 else 8
                    n = _tree(
                        st, buf, mode, probs, counts, weights,
                        OFF_NZEA + ((edge * 7 + min(_bitlen(nz7[b]), 6)) * 9 + npred) * 8,
                        OFF_NZEB + ((edge * 9 + npred) * 9 + nbc) * 8,
                        OFF_NZEC + ((cc * 2 + edge) * NZ_BUCKETS + NZ_BUCKET[nz7[b]]) * 8,
                        W_NZE + (cc * 2 + edge) * 3, np.int64(3), n,
                    )  # fmt: skip
                    nze[b, edge] = n
                    rem = n
                    for t in range(1, 8):
                        if rem == 0:
                            break
                        z = step * t
                        v = np.int64(0) if decoding else np.int64(coef[b, z])
                        pb = 0
                        hint = 0
                        if nb >= 0:
                            p = preds[t]
                            pb = 1 + min(_bitlen(abs(p)), 10)
                            if p > 0:
                                hint = 1 if p == 1 else 2
                            elif p < 0:
                                hint = 3 if p == -1 else 4
                        mb = _prior(coef, left, up, upleft, upright, z)
                        ib = min(_bitlen(abs(np.int64(coef[b, z + across]))), I_BUCKETS - 1)
                        pos = edge * 7 + t - 1
                        if rem < 8 - t:
                            c1 = OFF_EZ1 + (pos * 7 + rem - 1) * P_BUCKETS + pb
                            c2 = OFF_EZ2 + pos * M_BUCKETS + mb
                            c3 = OFF_EZ3 + (pos * P_BUCKETS + pb) * I_BUCKETS + ib
                            direct = DIRECT_EDGE[rem, t]
                            if _mix(st, buf, mode, probs, counts, weights, c1, c2, c3, W_EZ + edge, direct,
                                    1 if v != 0 else 0) == 0:
                                continue
                        rem -= 1
                        e = _exponent(
                            st, buf, mode, probs, counts, weights,
                            OFF_EE1 + (edge * P_BUCKETS + pb) * MAX_EXP - 1,
                            OFF_EE2 + (edge * M_BUCKETS + mb) * MAX_EXP - 1,
                            OFF_EE3 + (pos * 7 + rem) * MAX_EXP - 1,
                            W_EE + edge * MAX_EXP - 1, np.int64(1), _bitlen(abs(v)), pb - 1 if pb > 0 else NO_GUESS,
                        )  # fmt: skip
                        rel = 0  # how the prediction compares with the exponent
                        if nb >= 0:
                            lp = _bitlen(abs(preds[t]))
                            if lp < e:
                                rel = 1
                            elif lp > e:
                                rel = 4
                            elif e >= 2 and (abs(preds[t]) >> (e - 2)) & 1:
                                rel = 3
                            else:
                                rel = 2
                        a = _mantissa(st, buf, mode, probs, counts, OFF_MANT + (6 + rel) * E1 * 2, abs(v), e)
                        neg = _bit(st, buf, mode, probs, counts, OFF_ESIGN + edge * S_HINTS + hint, 1 if v < 0 else 0)
                        if decoding:
                            if a > 32768 or (a == 32768 and neg == 0):
                                return ERR_RANGE
                            coef[b, z] = -a if neg else a

                # ---- DC: residual from the boundary predictions of the left and upper blocks
                if left >= 0 and up >= 0:
                    pl = _boundary(coef, qt, b, left, np.int64(0), np.int64(1))
                    pu = _boundary(coef, qt, b, up, np.int64(0), np.int64(8))
                    pred = _rdiv((pl + pu) >> 1, q00)
                    act = min(_bitlen(abs(pl - pu) // q00), 12)
                elif left >= 0:
                    pred = _rdiv(_boundary(coef, qt, b, left, np.int64(0), np.int64(1)), q00)
                    act = 13
                elif up >= 0:
                    pred = _rdiv(_boundary(coef, qt, b, up, np.int64(0), np.int64(8)), q00)
                    act = 13
                else:
                    pred = last_dc
                    act = 14
                pred = min(max(pred, -32768), 32767)
                if left >= 0 and up >= 0:
                    rb = (dcr[left] + dcr[up] + 1) >> 1
                elif left >= 0:
                    rb = dcr[left]
                elif up >= 0:
                    rb = dcr[up]
                else:
                    rb = 16
                rb = min(rb, 16)
                r = np.int64(0) if decoding else np.int64(coef[b, 0]) - pred
                e = _exponent(
                    st, buf, mode, probs, counts, weights,
                    OFF_DC1 + (cc * DC_ACT + act) * E1,
                    OFF_DC2 + (cc * NZ_BUCKETS + NZ_BUCKET[nz7[b]]) * E1,
                    OFF_DC3 + (cc * DC_RES + rb) * E1,
                    W_DC + cc * E1, np.int64(0), _bitlen(abs(r)), np.int64(NO_GUESS),
                )  # fmt: skip
                dcr[b] = e
                if e > 0:
                    a = _mantissa(st, buf, mode, probs, counts, OFF_DCM + cc * E1 * 2, abs(r), e)
                    neg = _bit(st, buf, mode, probs, counts, OFF_DCS + cc * DC_ACT + act, 1 if r < 0 else 0)
                    r = -a if neg else a
                else:
                    r = 0
                dc = pred + r
                if decoding:
                    if dc < -32768 or dc > 32767:
                        return ERR_RANGE
                    coef[b, 0] = dc
                last_dc = dc
                if st[_FLAG] != 0:
                    return ERR_OVERFLOW if not decoding else ERR_TRUNCATED
    if not decoding:
        for _ in range(5):
            _shift_low(st, buf)
        if st[_FLAG] != 0:
            return ERR_OVERFLOW
    elif st[_FLAG] != 0:
        return ERR_TRUNCATED
    return OK


@numba.njit(cache=True, nogil=True)
def _encode_blocks(coef, index, comps, qts, buf, st, probs, counts, weights, nz7, nze, dcr):
    return _code_blocks(coef, index, comps, qts, buf, st, probs, counts, weights, nz7, nze, dcr, ENCODE)


@numba.njit(cache=True, nogil=True)
def _decode_blocks(coef, index, comps, qts, buf, st, probs, counts, weights, nz7, nze, dcr):
    return _code_blocks(coef, index, comps, qts, buf, st, probs, counts, weights, nz7, nze, dcr, DECODE)


def _contexts():
    """Initial state: every probability 1/2 with count 0; mixer weights W_INIT, bias 0,
    direct input W_DIRECT."""
    weights = np.zeros((N_MIXERS, MIX_INPUTS), np.int64)
    weights[:, :3] = W_INIT
    weights[:, 4] = W_DIRECT
    return np.full(N_CONTEXTS, 32768, np.uint16), np.zeros(N_CONTEXTS, np.uint8), weights


def _arrays(index, comps, qtables):
    return (
        np.ascontiguousarray(index, dtype=np.int32),
        np.ascontiguousarray(comps, dtype=np.int64),
        np.ascontiguousarray(qtables, dtype=np.uint16),
    )


def _work(n: int):
    """The model's per-block memory (``_code_blocks``' nz7, nze, dcr), shared by segments:
    each writes and reads only its own blocks."""
    return np.zeros(n, np.int64), np.zeros((n, 2), np.int64), np.zeros(n, np.int64)


def encode_segments(coef, index, segments, qtables) -> list[bytes]:
    """Arithmetic-code blocks, one independent stream per segment (coded in parallel).

    ``coef`` int16[n, 64] natural order; ``index`` int32[m], the concatenated block grids of
    the components (row of coef, or -1 for a block not coded); each segment is an int64[c, 5]
    of (grid offset in index, block rows, block columns, class (0 luma, 1 chroma),
    quantisation table) per component, its rows a band of the grid; ``qtables``
    uint16[t, 64] natural order.
    """
    coef = np.ascontiguousarray(coef, dtype=np.int16)
    index, _, qtables = _arrays(index, segments[0], qtables)
    work = _work(coef.shape[0])

    def encode(comps):
        comps = np.ascontiguousarray(comps, dtype=np.int64)
        stored = sum(int(np.count_nonzero(index[o : o + r * c] >= 0)) for o, r, c, *_ in comps)
        cap = 1024 + stored * 160
        while True:
            buf = np.zeros(cap, np.uint8)
            st = np.zeros(8, np.int64)
            st[_RANGE] = 0xFFFFFFFF
            st[_CSIZE] = 1
            status = _encode_blocks(coef, index, comps, qtables, buf, st, *_contexts(), *work)
            if status == OK:
                return buf[1 : st[_POS]].tobytes()  # an LZMA range coder's first byte is always 0
            if status != ERR_OVERFLOW:
                raise ValueError(CODER_ERRORS.get(status, "coder error"))
            cap *= 2

    return threads.run(encode, segments)


def decode_segments(streams, coef, index, segments, qtables) -> int:
    """Decode the streams of ``encode_segments`` into ``coef`` (a zeroed, writable
    int16[n, 64]), in parallel; status 0 or the first failing segment's key of
    CODER_ERRORS. Each stream must be consumed whole."""
    index, _, qtables = _arrays(index, segments[0], qtables)
    work = _work(coef.shape[0])

    def decode(job):
        data, comps = job
        buf = np.frombuffer(bytes(data), np.uint8).copy()  # writable: one kernel signature
        if buf.shape[0] < 4:
            return ERR_TRUNCATED
        st = np.zeros(8, np.int64)
        st[_RANGE] = 0xFFFFFFFF
        st[_CODE] = (int(buf[0]) << 24) | (int(buf[1]) << 16) | (int(buf[2]) << 8) | int(buf[3])
        st[_POS] = 4
        comps = np.ascontiguousarray(comps, dtype=np.int64)
        status = int(_decode_blocks(coef, index, comps, qtables, buf, st, *_contexts(), *work))
        if status == OK and st[_POS] != buf.shape[0]:
            return ERR_TRAILING if st[_POS] < buf.shape[0] else ERR_TRUNCATED
        return status

    return next((s for s in threads.run(decode, zip(streams, segments)) if s != OK), OK)


@numba.njit(cache=True, nogil=True)
def _add_escapes(values, cursor, high, need, data, start):
    i = start
    while i < data.shape[0] and need > 0:
        b = np.int64(data[i])
        i += 1
        if high < 0:
            high = b
            continue
        while cursor < values.shape[0] and values[cursor] != 255:
            cursor += 1
        if cursor == values.shape[0]:  # fewer values 255 than ``need``
            return i, cursor, high, need, 2
        v = 255 + (high << 8) + b
        high = -1
        if v > 65535:  # |V| > 32768: no int16 coefficient
            return i, cursor, high, need, 1
        values[cursor] = v
        cursor += 1
        need -= 1
    return i, cursor, high, need, 0


def add_escapes(values, cursor: int, high: int, need: int, data, start: int):
    """Coder 1's escapes (§6.4.4): read big-endian u16 from ``data[start:]`` and add each,
    in order, to the next value 255 of ``values`` (uint16) from ``cursor`` on, until
    ``need`` are added; ``high`` is a first byte carried over from the previous data (-1:
    none). Returns (next start, cursor, high, need, status): status 1 if a value passes
    65535 (a coefficient outside int16), 2 if fewer than ``need`` values 255 are left."""
    out = _add_escapes(values, np.int64(cursor), np.int64(high), np.int64(need), data, np.int64(start))
    return tuple(int(v) for v in out)


@numba.njit(cache=True, nogil=True)
def _unmap_values(values, n):
    coef = np.empty((n, 64), np.int16)
    for k in range(64):
        z = ZIGZAG[k]
        for j in range(n):
            m = np.int64(values[k * n + j])
            coef[j, z] = (m >> 1) if (m & 1) == 0 else -((m + 1) >> 1)
    dc = np.int64(0)
    for j in range(n):  # DC differences: cumulative sums, wrapped to int16
        dc = ((dc + coef[j, 0] + 32768) & 0xFFFF) - 32768
        coef[j, 0] = dc
    return coef


def unmap_values(values, n: int) -> np.ndarray:
    """Coder 1's mapped values of one component (uint16[64 n], zigzag index k major) as
    coefficients int16[n, 64] in natural order, DC differences summed (§6.4.4)."""
    if values.dtype != np.uint16 or values.shape != (64 * n,):
        raise ValueError("values must be uint16[64 n]")
    return _unmap_values(values, np.int64(n))
