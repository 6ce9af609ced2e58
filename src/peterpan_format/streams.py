"""Safe decoding of the standard bitstreams embedded in chunks: Brotli and WebP."""

from __future__ import annotations

import io
import brotli
from PIL import Image

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, brotli.error)


def brotli_decompress(data: bytes, limit: int, what: str) -> bytes:
    """Decompress a whole Brotli stream, refusing (while decompressing) output over ``limit``."""
    decompressor = brotli.Decompressor()
    parts, total = [], 0
    try:
        block = decompressor.process(data, output_buffer_limit=limit + 1)
        while True:
            parts.append(block)
            total += len(block)
            if total > limit:
                raise OSError(f"PPAN {what} decompress to more than {limit} bytes")
            if decompressor.is_finished() or decompressor.can_accept_more_data():
                break
            block = decompressor.process(b"", output_buffer_limit=limit + 1 - total)
    except brotli.error as exc:
        raise OSError(f"PPAN {what}: corrupt Brotli stream") from exc
    if not decompressor.is_finished():
        raise OSError(f"PPAN {what}: truncated Brotli stream")
    return b"".join(parts)


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


def decode_embedded_webp(data: bytes, size: tuple[int, int], mode: str, what: str) -> Image.Image:
    """Pixels of a single-frame WebP of exactly ``size`` and ``mode`` (RGB read as opaque RGBA)."""
    canvas = webp_canvas_size(data)
    if canvas != size:
        raise OSError(f"PPAN {what}: WebP canvas is {canvas}, expected {size}")
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
