"""Row run-lengths of the subject mask: the ``runs`` varint stream of MASK coding 1 (spec §5)."""

import numba
import numpy as np

from . import as_u8

ERR_TRUNCATED = -1
ERR_RUN_PAST_ROW = -2
ERR_ZERO_RUN = -3
ERR_TRAILING = -4
ERR_VARINT = -5

MASK_ERRORS = {
    ERR_TRUNCATED: "mask runs end before the last row",
    ERR_RUN_PAST_ROW: "mask run passes the end of its row",
    ERR_ZERO_RUN: "zero-length mask run that is not the first of its row",
    ERR_TRAILING: "trailing bytes after the last mask row",
    ERR_VARINT: "mask varint not canonical, longer than 5 bytes or not below 2^32",
}


@numba.njit(cache=True, nogil=True)
def _encode_mask(mask):
    """Runs of a uint8[H, W] mask (nonzero = subject) as LEB128 varints, row by row."""
    height, width = mask.shape
    # A row takes at most W + 1 bytes: a varint of v >= 1 is at most v bytes long.
    buf = np.empty(height * (width + 1), np.uint8)
    n = 0
    for y in range(height):
        x = 0
        subject = False
        while True:
            start = x
            while x < width and (mask[y, x] != 0) == subject:
                x += 1
            v = x - start
            while v >= 128:
                buf[n] = (v & 127) | 128
                n += 1
                v >>= 7
            buf[n] = v
            n += 1
            subject = not subject
            if x >= width:
                break
    return buf[:n].copy()


@numba.njit(cache=True, nogil=True)
def _decode_mask(runs, width, height):
    """uint8[H, W] 0/1 mask from a ``runs`` stream, and a status (0 or an ERR_* code)."""
    mask = np.zeros((height, width), np.uint8)
    size = runs.size
    pos = 0
    for y in range(height):
        x = 0
        first = True
        subject = False
        while first or x < width:
            v = 0
            shift = 0
            done = False
            for _ in range(5):
                if pos >= size:
                    return mask, ERR_TRUNCATED
                b = np.int64(runs[pos])
                pos += 1
                v |= (b & 127) << shift
                shift += 7
                if b < 128:
                    done = True
                    break
            if not done or v >= 1 << 32 or (b == 0 and shift > 7):
                return mask, ERR_VARINT
            if v == 0 and not first:
                return mask, ERR_ZERO_RUN
            if v > width - x:
                return mask, ERR_RUN_PAST_ROW
            if subject:
                mask[y, x : x + v] = 1
            x += v
            subject = not subject
            first = False
    if pos != size:
        return mask, ERR_TRAILING
    return mask, 0


def encode_mask(mask) -> np.ndarray:
    """The spec §5 ``runs`` stream (before Brotli) of a uint8[H, W] 0/1 mask."""
    return _encode_mask(as_u8(mask, 2, "mask"))


def decode_mask(runs, width: int, height: int) -> tuple[np.ndarray, int]:
    """Decode a ``runs`` stream into (uint8[height, width] 0/1 mask, status).

    Status 0 means success; a negative status is a key of ``MASK_ERRORS``. Any input bytes
    are safe: the stream is never read past its end.
    """
    width, height = int(width), int(height)
    if width < 0 or height < 0:
        raise ValueError("width and height must be >= 0")
    mask, status = _decode_mask(as_u8(runs, 1, "runs"), width, height)
    return mask, int(status)
