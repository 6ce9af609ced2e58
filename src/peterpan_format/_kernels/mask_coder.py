"""Context-modelled arithmetic coding of the subject mask: MASK coding 2 (spec §5.2).

JBIG2's generic region coding (template 0) with the range coder and adaptive contexts of
SUBJ coding 4's coder 2 (§6.4.5.1 - 2; the range coder's steps are jpeg_coder's): the
pixels of the mask's box in raster order, each one binary decision whose context is the 16
pixels already coded around it (0 outside the box), and before each row one decision "this
row equals the row above" (JBIG2's typical prediction). One kernel, ``_code``, encodes and
decodes through the same model, so the two cannot drift apart; as in jpeg_coder, its
``mode`` is a compile-time constant (``_encode`` and ``_decode`` pass it), so decoding
compiles only the decoder. It never reads outside its arrays: a decoder that
runs out of input reads zeros and reports it.
"""

import numba
import numpy as np

from . import as_u8
from .jpeg_coder import _CODE, _CSIZE, _FLAG, _POS, _RANGE, DECODE, ENCODE, P_MAX, P_MIN, _code_p, _shift_low

OK = 0
ERR_OVERFLOW = -1
ERR_TRUNCATED = -2
ERR_TRAILING = -3

MASK_CODER_ERRORS = {
    ERR_TRUNCATED: "mask stream ends early",
    ERR_TRAILING: "bytes after the end of the mask stream",
}

#: (dx, dy) of the template's pixels, bit 15 first: JBIG2 generic template 0 with its
#: default adaptive pixels (3, -1), (-3, -1), (2, -2), (-2, -2)
TEMPLATE = np.array([
    (-1, -2), (0, -2), (1, -2), (2, -2), (-2, -2),
    (-2, -1), (-1, -1), (0, -1), (1, -1), (2, -1), (3, -1), (-3, -1),
    (-4, 0), (-3, 0), (-2, 0), (-1, 0),
], np.int64)  # fmt: skip
N_CONTEXTS = 1 << TEMPLATE.shape[0]
CTX_SAME_ROW = N_CONTEXTS  # the typical-prediction flag, its own context
RATE_LIMIT = 12
RATE = np.array([65536 // (n + 3) for n in range(RATE_LIMIT + 1)], np.int64)
PAD = 4  # columns of zeros left and right of the box


def _row_bits(dy: int, first: int, count: int) -> np.ndarray:
    """Context bits of ``count`` pixels of row ``dy`` from dx = ``first`` on, packed as a
    number (first pixel the most significant bit): value -> the bits it sets in the
    context, so that a context is three table reads as the template slides along a row."""
    table = np.zeros(1 << count, np.int64)
    for j in range(count):
        (t,) = np.flatnonzero((TEMPLATE[:, 0] == first + j) & (TEMPLATE[:, 1] == dy))
        table[[v for v in range(1 << count) if v >> (count - 1 - j) & 1]] |= 1 << (TEMPLATE.shape[0] - 1 - t)
    return table


ABOVE2 = _row_bits(-2, -2, 5)  # pixels x - 2 .. x + 2 of row y - 2
ABOVE1 = _row_bits(-1, -3, 7)  # x - 3 .. x + 3 of row y - 1
# row y's pixels x - 4 .. x - 1 are the context's low 4 bits as they are (tests/test_mask_coding.py)


@numba.njit(inline="always")
def _bit(st, buf, mode, probs, counts, ctx, bit):
    """Code ``bit`` (encoder) or return the decoded one, with context ``ctx``; adapt it."""
    p = probs[ctx]
    bit = _code_p(st, buf, mode, p, bit)
    n = counts[ctx]
    if bit:
        p += ((65536 - p) * RATE[n]) >> 16
    else:
        p -= (p * RATE[n]) >> 16
    probs[ctx] = min(max(p, P_MIN), P_MAX)
    counts[ctx] = min(n + 1, RATE_LIMIT)
    return bit


@numba.njit(cache=True, nogil=True)
def _code(box, buf, st, probs, counts, rows, mode):
    """Encode (``mode`` ENCODE) or decode (DECODE, a compile-time constant) ``box``
    (uint8[h, w], 0/1) in place; status.
    ``rows`` (int64[3, w + 2 PAD], zeros) holds rows y - 2, y - 1, y of the box with PAD
    zero columns either side (rows above the box are 0)."""
    h, w = box.shape
    decoding = mode == DECODE
    for y in range(h):
        for x in range(w + 2 * PAD):
            rows[0, x] = rows[1, x]
            rows[1, x] = rows[2, x]
        same = 1
        if not decoding:
            for x in range(w):
                if box[y, x] != rows[1, PAD + x]:
                    same = 0
                    break
        same = _bit(st, buf, mode, probs, counts, CTX_SAME_ROW, same)
        for x in range(w + 2 * PAD):
            rows[2, x] = rows[1, x] if same else 0
        if not same:
            above2 = above1 = left = np.int64(0)  # the template's pixels of each row at x = 0
            for x in range(5):
                above2 = (above2 << 1) | rows[0, PAD - 2 + x]
            for x in range(7):
                above1 = (above1 << 1) | rows[1, PAD - 3 + x]
            for x in range(w):
                ctx = ABOVE2[above2] | ABOVE1[above1] | left
                bit = _bit(st, buf, mode, probs, counts, ctx, box[y, x] if not decoding else 0)
                rows[2, PAD + x] = bit
                above2 = ((above2 << 1) & 31) | rows[0, PAD + x + 3]
                above1 = ((above1 << 1) & 127) | rows[1, PAD + x + 4]
                left = ((left << 1) & 15) | bit
        if decoding:
            for x in range(w):
                box[y, x] = rows[2, PAD + x]
        if st[_FLAG]:
            return ERR_TRUNCATED if decoding else ERR_OVERFLOW
    return OK


@numba.njit(cache=True, nogil=True)
def _encode(box, buf, st, probs, counts, rows):
    return _code(box, buf, st, probs, counts, rows, ENCODE)


@numba.njit(cache=True, nogil=True)
def _decode(box, buf, st, probs, counts, rows):
    return _code(box, buf, st, probs, counts, rows, DECODE)


def _state(width: int):
    """The adaptive contexts (probability 1/2, count 0) and the row buffer of ``_code``."""
    return (np.full(N_CONTEXTS + 1, 32768, np.int64), np.zeros(N_CONTEXTS + 1, np.int64),
            np.zeros((3, width + 2 * PAD), np.int64))


def encode_mask_box(box) -> bytes:
    """The coding-2 stream of a mask's box (uint8[h, w], nonzero = subject; h, w >= 1)."""
    box = np.ascontiguousarray(as_u8(box, 2, "box") != 0, dtype=np.uint8)
    cap = 64 + box.size // 4
    while True:
        buf = np.zeros(cap, np.uint8)
        st = np.zeros(8, np.int64)
        st[_RANGE] = 0xFFFFFFFF
        st[_CSIZE] = 1
        status = _encode(box, buf, st, *_state(box.shape[1]))
        if status == OK:
            for _ in range(5):
                _shift_low(st, buf)
            if not st[_FLAG]:
                return buf[1 : st[_POS]].tobytes()  # the first byte of an LZMA range coder is 0
        cap *= 2


def decode_mask_box(data, width: int, height: int) -> tuple[np.ndarray, int]:
    """(uint8[height, width] 0/1 box, status) from a coding-2 stream; status 0 or a key of
    MASK_CODER_ERRORS. The whole stream must be read, and no more."""
    buf = np.zeros(max(len(data), 4), np.uint8)
    buf[: len(data)] = np.frombuffer(bytes(data), np.uint8)
    box = np.zeros((int(height), int(width)), np.uint8)
    st = np.zeros(8, np.int64)
    st[_RANGE] = 0xFFFFFFFF
    st[_CODE] = int.from_bytes(buf[:4].tobytes(), "big")
    st[_POS] = 4
    status = _decode(box, buf[: len(data)] if len(data) >= 4 else buf[:0], st, *_state(box.shape[1]))
    if status == OK and len(data) < 4:
        status = ERR_TRUNCATED
    if status == OK and st[_POS] != len(data):
        status = ERR_TRAILING if st[_POS] < len(data) else ERR_TRUNCATED
    return box, int(status)
