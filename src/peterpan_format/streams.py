"""Safe decoding of the standard bitstreams embedded in chunks: Brotli and WebP."""

from __future__ import annotations

import io
import brotli
from PIL import Image

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, brotli.error)
# Output asked of each Decompressor.process() call. The output_buffer_limit of brotli 1.2
# is not a hard limit: a call returns whole output blocks (32 KiB, then 64 KiB, 128 KiB, ...)
# until their total reaches it, so one call with a large limit may return almost twice as
# much (google/brotli#1396). Asking for less than one block gets one block (at most 32 KiB)
# per call; a brotli that honours the limit exactly gives 16 KiB per call.
_BROTLI_STEP = 1 << 14


def brotli_decompress(data: bytes, limit: int, what: str) -> bytes:
    """Decompress a whole Brotli stream, refusing (while decompressing) output over ``limit``.

    At most ``limit`` + 32 KiB is ever decompressed.
    """
    return brotli_array(data, limit, what).tobytes()


def brotli_array(data: bytes, limit: int, what: str) -> np.ndarray:
    """brotli_decompress into a uint8 array that holds the output once: blocks are copied
    into a buffer of ``limit`` bytes, whose memory is touched only as far as it is written."""
    import numpy as np  # not at import: the plugin opens files without NumPy

    out = np.empty(limit, np.uint8)
    total = 0
    for block in brotli_blocks(data, limit, what):
        out[total : total + block.size] = block
        total += block.size
    return out[:total]


def brotli_blocks(data: bytes, limit: int, what: str):
    """The output of a whole Brotli stream as uint8 arrays of at most 32 KiB, in order;
    OSError as soon as the output passes ``limit``, or at the end if the stream is
    truncated or corrupt. Nothing is held beyond the block being yielded."""
    import numpy as np

    decompressor = brotli.Decompressor()
    total = 0
    try:
        block = decompressor.process(data, output_buffer_limit=_BROTLI_STEP)
        while True:
            total += len(block)
            if total > limit:
                raise OSError(f"PPAN {what} decompress to more than {limit} bytes")
            if block:
                yield np.frombuffer(block, np.uint8)
            # No output means no output pending: the stream ended or wants more input.
            # (can_accept_more_data() is no guide: it is true once all input is buffered.)
            if not block or decompressor.is_finished():
                break
            block = decompressor.process(b"", output_buffer_limit=_BROTLI_STEP)
    except brotli.error as exc:
        raise OSError(f"PPAN {what}: corrupt Brotli stream") from exc
    if not decompressor.is_finished():
        raise OSError(f"PPAN {what}: truncated Brotli stream")


def webp_canvas_size(data: bytes) -> tuple[int, int] | None:
    """Canvas size from a WebP file's first chunk header (RFC 9649), without decoding."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _check_framing(data: bytes, what: str) -> None:
    """RIFF rules of spec §4 and §6.1 that libwebp does not enforce (it ignores extra bytes).

    The RIFF size covers the payload exactly; a simple-format file (first chunk ``VP8 `` or
    ``VP8L``) is that one chunk; an extended-format file is not animated.
    """
    if int.from_bytes(data[4:8], "little") != len(data) - 8:
        raise OSError(f"PPAN {what}: WebP RIFF size does not match the payload of {len(data)} bytes")
    first = data[12:16]
    if first in (b"VP8 ", b"VP8L"):
        size = int.from_bytes(data[16:20], "little")
        if 20 + size + (size & 1) != len(data):
            raise OSError(f"PPAN {what}: simple-format WebP is not exactly one {first.decode().strip()} chunk")
    elif data[20] & 0x02:  # VP8X flags: animation
        raise OSError(f"PPAN {what}: animated WebP")


def decode_embedded_webp(data: bytes, size: tuple[int, int], mode: str, what: str) -> Image.Image:
    """Pixels of a single-frame WebP of exactly ``size`` and ``mode`` (RGB read as opaque RGBA)."""
    canvas = webp_canvas_size(data)
    if canvas != size:
        raise OSError(f"PPAN {what}: WebP canvas is {canvas}, expected {size}")
    _check_framing(data, what)
    try:
        with Image.open(io.BytesIO(data), formats=["WEBP"]) as im:
            found = (im.size, im.mode, getattr(im, "n_frames", 1))
            if found == (size, mode, 1):
                im.load()
                return im
            if found == (size, "RGB", 1) and mode == "RGBA":  # opaque: WebP dropped the alpha
                return im.convert("RGBA")
    except _DECODE_ERRORS as exc:
        raise OSError(f"PPAN {what}: invalid WebP ({exc})") from exc
    raise OSError(f"PPAN {what}: WebP is {found} (size, mode, frames), expected {(size, mode, 1)}")
