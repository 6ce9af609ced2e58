"""Regenerate the malformed-file corpus: tests/corpus/*.ppan and tests/corpus/expected.json.

Each file breaks one rule of spec/FORMAT.md and is named for it. The manifest gives, per
file, what it breaks, where the reference decoder fails ("open": ``Image.open``, "load":
``load()``, or "none": it decodes, e.g. a skipped metadata chunk) and the exception type
and a piece of its message. tests/test_corpus.py replays them. Files are a few hundred
bytes; the Brotli bombs are tiny files that would decompress to tens of MiB.

Every input a fuzzer ever crashed on belongs here: add it to ``malformed()`` (or as a raw
file in ``FINDINGS``) with its expected failure, and run ``python tests/corpus/make_corpus.py``.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import brotli
import numpy as np
from PIL import Image

import peterpan_format  # noqa: F401  (registers the plugin)
from peterpan_format._kernels.mask_coder import encode_mask_box

HERE = Path(__file__).resolve().parent
SIGNATURE = b"\x89PAN\r\n\x1a\n"
WIDTH, HEIGHT, SCALE = 8, 6, 2


# --- building blocks ---------------------------------------------------------------------


def chunk(chunk_type: bytes, data: bytes, length: int | None = None, crc: int | None = None) -> bytes:
    if crc is None:
        crc = zlib.crc32(data, zlib.crc32(chunk_type))
    return struct.pack(">I4s", len(data) if length is None else length, chunk_type) + data + struct.pack(">I", crc)


def build(chunks, tail: bytes = b"") -> bytes:
    return SIGNATURE + b"".join(chunk(t, d) for t, d in chunks) + tail


def head(width=WIDTH, height=HEIGHT, channels=3, scale=SCALE, feather=1, version=1, reserved=0) -> bytes:
    return struct.pack(">BBIIBBH", version, channels, width, height, scale, feather, reserved)


def varints(values) -> bytes:
    out = bytearray()
    for v in values:
        while v >= 128:
            out.append((v & 127) | 128)
            v >>= 7
        out.append(v)
    return bytes(out)


def pixels(width=WIDTH, height=HEIGHT, channels=3) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x * 29 + y * 17 + 60 * c) % 256 for c in range(channels)], axis=2).astype(np.uint8)


def mask(width=WIDTH, height=HEIGHT) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return (x >= 2) & (x < 6) & (y >= 1) & (y < 5) & ~((x == 2) & (y == 1))  # box (2, 1, 4, 4)


def encode(coding="med", mask_array=None, **params) -> list[tuple[bytes, bytes]]:
    """The chunks of a valid RGB file (8 x 6, scale 2, feather 1); coding "jpeg" codes the
    subject as the coefficients of a JPEG of the same pixels (SUBJ coding 4)."""
    out = io.BytesIO()
    image = Image.fromarray(pixels())
    if coding == "jpeg":
        jpeg = io.BytesIO()
        image.save(jpeg, "JPEG", quality=80)
        image = Image.open(jpeg)
        params["jpeg_source"] = jpeg.getvalue()
    image.save(out, format="PPAN", mask=mask() if mask_array is None else mask_array,
               background_scale=SCALE, feather=1, background_quality=10, subject_coding=coding, **params)
    data, chunks, pos = out.getvalue(), [], 8
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]))
        pos += 12 + n
    return chunks


def replace(chunks, chunk_type: bytes, data: bytes):
    return [(t, data if t == chunk_type else d) for t, d in chunks]


def layer(chunks, chunk_type: bytes) -> bytes:
    return dict(chunks)[chunk_type]


def webp(array: np.ndarray, **params) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "WEBP", **params)
    return out.getvalue()


def vp8l(width: int, height: int) -> bytes:
    """The VP8L chunk (header included) of a lossless WebP of pixels(width, height)."""
    return webp(pixels(width, height), lossless=True)[12:]


def riff(chunks: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def webp_chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)


def vp8x(width: int, height: int, flags: int = 0) -> bytes:
    return webp_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little"))


def bgnd_prefix(width=WIDTH // SCALE, height=HEIGHT // SCALE, coding=1) -> bytes:
    return struct.pack(">BII", coding, width, height)


def subj_prefix(coding=2, box=(2, 1, 4, 4)) -> bytes:
    return struct.pack(">BIIII", coding, *box)


def mask_payload(runs: bytes) -> bytes:
    return b"\x01" + brotli.compress(runs)


def mask2_box(box) -> bytes:
    return struct.pack(">BHHHH", 2, *box)


ROWS = [[8], [3, 3, 2], [2, 4, 2], [2, 4, 2], [2, 4, 2], [8]]  # the runs of mask()


def rows(*override) -> bytes:
    return varints([v for row in (override or ROWS) for v in row])


# --- the corpus --------------------------------------------------------------------------


def malformed():
    """(name, data, at, error type, message piece, what it breaks).

    For a file that decodes (at "none"), the message piece is a Pillow ``info`` key that
    must be absent (the skipped metadata chunk's).
    """
    base = encode()
    webp_base = encode("webp")
    cm_base = encode("cm")
    jpeg_base = encode("jpeg")  # coder 2 (the smaller here)
    jpeg_subj = layer(jpeg_base, b"SUBJ")
    stream = jpeg_subj[35:]  # coder 2's stream, after the coding-4 header (two IJG tables)
    empty = bytes(4)  # a coder-2 stream of no block

    def segments(data: bytes):
        """The JPEG base file with coder 3 (§6.4.5.6) and this data."""
        return build(replace(jpeg_base, b"SUBJ", jpeg_subj[:17] + b"\x03" + jpeg_subj[18:35] + data))

    near_base = encode("cm", subject="near-lossless", max_error=2)
    near_subj = layer(near_base, b"SUBJ")
    bg = layer(base, b"BGND")
    mask2 = layer(base, b"MASK")  # coding 2
    assert mask2[0] == 2
    bw, bh = WIDTH // SCALE, HEIGHT // SCALE
    big = 60000
    bomb64 = brotli.compress(b"\x00" * (64 << 20), quality=5)
    yield from [
        # signature and HEAD: refused at open (SyntaxError inside the plugin)
        ("bad-signature", b"\x89PNG\r\n\x1a\n" + build(base)[8:], "open", "UnidentifiedImageError", "", "§2 signature"),
        ("truncated-signature", SIGNATURE[:5], "open", "UnidentifiedImageError", "", "§2 signature"),
        ("truncated-header", build(base)[:20], "open", "UnidentifiedImageError", "truncated", "§2.1 HEAD chunk cut off"),
        ("empty-after-signature", SIGNATURE, "open", "UnidentifiedImageError", "truncated", "§2 HEAD missing"),
        ("head-not-first", build(base[1:]), "open", "UnidentifiedImageError", "expected HEAD", "§2 HEAD is first"),
        ("ancillary-before-header", build([(b"exif", b"\x00MM\x00*")] + base), "open", "UnidentifiedImageError",
         "expected HEAD", "§2 HEAD is first"),
        ("head-wrong-length", build(replace(base, b"HEAD", head() + b"\0")), "open", "UnidentifiedImageError",
         "15 bytes", "§3 HEAD is 14 bytes"),
        ("head-crc-mismatch", SIGNATURE + chunk(b"HEAD", head(), crc=0) + build(base[1:])[8:], "open",
         "UnidentifiedImageError", "CRC", "§2.1 CRC"),
        ("zero-width", build(replace(base, b"HEAD", head(width=0))), "open", "UnidentifiedImageError",
         "out of range", "§3 width 1..65535"),
        ("zero-height", build(replace(base, b"HEAD", head(height=0))), "open", "UnidentifiedImageError",
         "out of range", "§3 height 1..65535"),
        ("oversize-width", build(replace(base, b"HEAD", head(width=65536))), "open", "UnidentifiedImageError",
         "out of range", "§3 width 1..65535"),
        ("oversize-height-u32", build(replace(base, b"HEAD", head(height=0xFFFFFFFF))), "open",
         "UnidentifiedImageError", "out of range", "§3 height 1..65535"),
        ("unknown-version", build(replace(base, b"HEAD", head(version=2))), "open", "UnidentifiedImageError",
         "version", "§3, §13 version 1"),
        ("two-channels", build(replace(base, b"HEAD", head(channels=2))), "open", "UnidentifiedImageError",
         "channel", "§3 channels 1, 3, 4"),
        ("scale-zero", build(replace(base, b"HEAD", head(scale=0))), "open", "UnidentifiedImageError",
         "scale", "§3 scale 1..8"),
        ("scale-nine", build(replace(base, b"HEAD", head(scale=9))), "open", "UnidentifiedImageError",
         "scale", "§3 scale 1..8"),
        ("feather-too-large", build(replace(base, b"HEAD", head(feather=33))), "open", "UnidentifiedImageError",
         "feather", "§3 feather 0..32"),
        ("reserved-not-zero", build(replace(base, b"HEAD", head(reserved=1))), "open", "UnidentifiedImageError",
         "reserved", "§3 reserved is 0"),
        ("decompression-bomb-header", build([(b"HEAD", head(width=big, height=big, scale=8)), (b"BGND", b"")]), "open",
         "DecompressionBombError", "exceeds limit", "§3, §10 width x height over 2 x MAX_IMAGE_PIXELS"),
        ("truncated-in-metadata", build(encode(icc_profile=b"icc" * 20)[:2])[:60], "open", "UnidentifiedImageError",
         "truncated", "§11 the file ends in the metadata before the first layer"),
        # chunk layer: refused at load
        ("crc-mismatch", SIGNATURE + chunk(b"HEAD", head()) + chunk(b"BGND", bg, crc=1) + build(base[2:])[8:],
         "load", "OSError", "CRC mismatch", "§2.1 CRC"),
        ("bad-ancillary-crc", build(base[:1]) + chunk(b"iccp", b"\x00icc", crc=2) + build(base[1:])[8:], "load",
         "OSError", "CRC mismatch", "§2.1 CRC, ancillary chunks too"),
        ("chunk-length-past-eof", build(base[:2]) + chunk(b"MASK", layer(base, b"MASK"), length=5000)
         + build(base[3:])[8:], "load", "OSError", "truncated", "§2.1 chunk past the end of the file"),
        ("chunk-length-over-2-30", build(base[:2]) + chunk(b"MASK", b"", length=(1 << 30) + 1), "load", "OSError",
         "exceeds 2^30", "§2.1 length at most 2^30"),
        ("invalid-chunk-type", build(base[:2]) + chunk(b"MA K", layer(base, b"MASK")) + build(base[3:])[8:],
         "load", "OSError", "chunk type", "§2.1 type is four ASCII letters"),
        ("unknown-critical-chunk", build(base[:2] + [(b"ZZZZ", b"")] + base[2:]), "load", "OSError",
         "unknown critical", "§2.1 unknown critical chunk"),
        ("duplicate-header", build(base[:2] + [base[0]] + base[2:]), "load", "OSError", "HEAD",
         "§2 critical chunks exactly once"),
        ("duplicate-mask", build(base[:3] + [base[2]] + base[3:]), "load", "OSError", "MASK where SUBJ",
         "§2 critical chunks exactly once"),
        ("missing-background", build(base[:1] + base[2:]), "load", "OSError", "MASK where BGND",
         "§2 BGND missing"),
        ("layers-out-of-order", build([base[0], base[2], base[1]] + base[3:]), "load", "OSError",
         "MASK where BGND", "§2 order BGND, MASK, SUBJ"),
        ("done-not-empty", build(base[:-1] + [(b"DONE", b"\0")]), "load", "OSError", "DONE chunk is not empty",
         "§7 DONE is empty"),
        ("missing-done", build(base[:-1]), "load", "OSError", "truncated", "§11 no DONE"),
        # BGND
        ("background-smaller-than-declared", build(replace(base, b"BGND", bgnd_prefix(bw - 1, bh) + bg[9:])),
         "load", "OSError", "BGND is 3x3", "§4 BGND size is ceil(W/s) x ceil(H/s)"),
        ("background-unknown-coding", build(replace(base, b"BGND", bgnd_prefix(coding=2) + bg[9:])), "load",
         "OSError", "BGND coding", "§4 coding 1"),
        ("background-too-short", build(replace(base, b"BGND", b"\x01\0\0")), "load", "OSError", "too short",
         "§4 BGND prefix"),
        ("background-not-webp", build(replace(base, b"BGND", bgnd_prefix() + b"GIF89a" + b"\0" * 40)), "load",
         "OSError", "canvas is None", "§4 payload is a WebP file"),
        ("webp-canvas-lie", build(replace(base, b"BGND", bgnd_prefix() + riff(
            vp8x(bw, bh) + vp8l(1, 1)))), "load", "OSError",
         "invalid WebP", "§4 canvas is bw x bh: the frame is 1 x 1"),
        ("webp-canvas-too-large", build(replace(base, b"BGND", bgnd_prefix() + riff(
            vp8x(16384, 16384) + vp8l(1, 1)))), "load", "OSError",
         "canvas is (16384, 16384)", "§4, §10 canvas checked before decoding"),
        ("webp-riff-trailing-bytes", build(replace(base, b"BGND", bg + b"JUNK")), "load", "OSError",
         "RIFF size", "§4 RIFF size = payload length - 8 (fuzzer finding)"),
        ("webp-animated-background", build(replace(base, b"BGND", bgnd_prefix() + animated(bw, bh))), "load",
         "OSError", "animated", "§4 one frame, no animation (fuzzer finding)"),
        ("webp-alpha-for-rgb", build(replace(base, b"BGND", bgnd_prefix() + webp(
            np.dstack([pixels(bw, bh), np.full((bh, bw), 7, np.uint8)]), lossless=True))), "load", "OSError",
         "RGBA", "§4 no alpha channel when channels is 3"),
        # MASK
        ("mask-unknown-coding", build(replace(base, b"MASK", b"\x03" + layer(base, b"MASK")[1:])), "load",
         "OSError", "MASK coding", "§5 coding 1 or 2"),
        ("mask-empty-payload", build(replace(base, b"MASK", b"")), "load", "OSError", "MASK coding", "§5 coding"),
        ("rle-run-past-row", build(replace(base, b"MASK", mask_payload(rows([8], [3, 3, 3], *ROWS[2:])))), "load",
         "OSError", "passes the end of its row", "§5 runs add up to W"),
        ("rle-zero-run", build(replace(base, b"MASK", mask_payload(rows([8], [3, 0, 3, 2], *ROWS[2:])))), "load",
         "OSError", "zero-length", "§5 later runs at least 1"),
        ("rle-missing-rows", build(replace(base, b"MASK", mask_payload(rows(*ROWS[:5])))), "load", "OSError",
         "end before the last row", "§5 H rows"),
        ("rle-trailing-bytes", build(replace(base, b"MASK", mask_payload(rows() + b"\x01"))), "load", "OSError",
         "trailing bytes", "§5 the stream ends after H rows"),
        ("rle-noncanonical-varint", build(replace(base, b"MASK", mask_payload(b"\x88\x00" + rows()[1:]))), "load",
         "OSError", "varint", "§1 canonical varints"),
        ("rle-varint-too-long", build(replace(base, b"MASK", mask_payload(b"\x80" * 5 + b"\x01"))), "load",
         "OSError", "varint", "§1 varints at most 5 bytes"),
        ("rle-varint-over-2-32", build(replace(base, b"MASK", mask_payload(b"\xff\xff\xff\xff\x1f"))), "load",
         "OSError", "varint", "§1 varint below 2^32"),
        ("brotli-bomb-mask", build(replace(base, b"MASK", b"\x01" + bomb64)), "load", "OSError",
         "decompress to more than 54 bytes", "§5, §10 runs at most H x (W + 1) bytes, capped while decompressing"),
        ("mask-brotli-truncated", build(replace(base, b"MASK", mask_payload(rows())[:-2])), "load", "OSError",
         "Brotli", "§1 one complete Brotli stream"),
        ("mask-brotli-trailing-bytes", build(replace(base, b"MASK", mask_payload(rows()) + b"\0")), "load",
         "OSError", "Brotli", "§1 nothing after the Brotli stream"),
        ("mask-coding1-valid", build(replace(base, b"MASK", mask_payload(rows()))), "none", "", "",
         "nothing: an old file's MASK coding 1 still decodes"),
        ("mask2-too-short", build(replace(base, b"MASK", b"\x02\0\0\0\0")), "load", "OSError", "too short",
         "§5.2 at least 9 bytes"),
        ("mask2-truncated", build(replace(base, b"MASK", mask2[:-2])), "load", "OSError", "ends early",
         "§5.2, §6.4.5.1 no reading past the stream's end"),
        ("mask2-trailing-bytes", build(replace(base, b"MASK", mask2 + b"\0")), "load", "OSError",
         "bytes after the end", "§5.2, §6.4.5.1 no bytes left after the last decision"),
        ("mask2-box-past-edge", build(replace(base, b"MASK", mask2_box((5, 1, 4, 4)) + mask2[9:])), "load",
         "OSError", "passes the image", "§5.2 x0 + width <= W"),
        ("mask2-box-not-tight", build(replace(base, b"MASK", mask2_box((1, 1, 5, 4)) + encode_mask_box(
            mask()[1:5, 1:6]))), "load", "OSError", "not the box of its pixels", "§5.2 the rectangle is the box"),
        ("mask2-empty-with-stream", build(replace(base, b"MASK", mask2_box((0, 0, 0, 0)) + b"\0")), "load",
         "OSError", "empty box", "§5.2 an empty mask has no stream"),
        ("mask2-empty-not-at-origin", build(replace(base, b"MASK", mask2_box((3, 0, 0, 4)))), "load",
         "OSError", "empty box", "§5.2 an empty mask's rectangle is (0, 0, 0, 0)"),
        # SUBJ
        ("subject-box-mismatch", build(replace(base, b"SUBJ", subj_prefix(box=(3, 1, 4, 4))
                                               + layer(base, b"SUBJ")[17:])), "load", "OSError",
         "does not match the mask", "§6 box is the mask's box"),
        ("subject-unknown-coding", build(replace(base, b"SUBJ", subj_prefix(coding=3) + layer(base, b"SUBJ")[17:])),
         "load", "OSError", "SUBJ coding 3", "§6 codings 0, 1, 2"),
        ("subject-too-short", build(replace(base, b"SUBJ", b"\x02\0\0")), "load", "OSError", "too short",
         "§6 SUBJ prefix"),
        ("subject-coding0-with-subject", build(replace(base, b"SUBJ", subj_prefix(coding=0))), "load", "OSError",
         "coding 0", "§6 coding 0 only for an empty mask"),
        ("subject-coding-with-empty-mask", build(replace(replace(base, b"MASK", mask_payload(varints([8] * 6))),
                                                         b"SUBJ", subj_prefix(box=(0, 0, 0, 0)) + brotli.compress(b""))),
         "load", "OSError", "mask is empty", "§6 codings 1 and 2 need n > 0"),
        ("med-residuals-short", build(replace(base, b"SUBJ", subj_prefix() + brotli.compress(b"\0" * 44))), "load",
         "OSError", "residuals are 44 bytes, expected 45", "§6.2 exactly channels x n bytes"),
        ("med-residuals-long", build(replace(base, b"SUBJ", subj_prefix() + brotli.compress(b"\0" * 46))), "load",
         "OSError", "more than 45 bytes", "§6.2 exactly channels x n bytes, capped"),
        ("brotli-bomb-subject", build(replace(base, b"SUBJ", subj_prefix() + bomb64)), "load", "OSError",
         "more than 45 bytes", "§6.2, §10 residuals capped while decompressing"),
        ("subject-webp-lossy", build(replace(webp_base, b"SUBJ", subj_prefix(coding=1) + webp(pixels(4, 4), quality=50))),
         "load", "OSError", "VP8L", "§6.1 simple-format lossless WebP"),
        ("subject-webp-wrong-size", build(replace(webp_base, b"SUBJ", subj_prefix(coding=1) + webp(
            pixels(5, 4), lossless=True))), "load", "OSError", "canvas is (5, 4)", "§6.1 canvas is the box"),
        ("subject-webp-extra-chunk", build(replace(webp_base, b"SUBJ", subj_prefix(coding=1) + riff(
            vp8l(4, 4) + webp_chunk(b"EXIF", b"MM\0*")))), "load", "OSError",
         "not exactly one VP8L chunk", "§6.1 the RIFF header, then one VP8L chunk (fuzzer finding)"),
        ("subject-webp-alpha-for-rgb", build(replace(webp_base, b"SUBJ", subj_prefix(coding=1) + webp(
            np.dstack([pixels(4, 4), np.full((4, 4), 9, np.uint8)]), lossless=True))), "load", "OSError",
         "RGBA", "§6.1 RGB WebP when channels is 3"),
        ("subject-cm-truncated", build(replace(cm_base, b"SUBJ", layer(cm_base, b"SUBJ")[:-3])), "load", "OSError",
         "ends before the last value", "§6.3 a payload that ends before the last residual"),
        ("subject-cm-trailing-bytes", build(replace(cm_base, b"SUBJ", layer(cm_base, b"SUBJ") + b"\0")), "load",
         "OSError", "left over", "§6.3 no bytes left over after the last residual"),
        ("subject-jpeg-unknown-coder", build(replace(jpeg_base, b"SUBJ", jpeg_subj[:17] + b"\x04" + jpeg_subj[18:])),
         "load", "OSError", "coder 4", "§6.4.1 coder 1, 2 or 3"),
        ("subject-jpeg-segments-none", segments(b"\x00" + stream), "load", "OSError", "segment count",
         "§6.4.5.6 S >= 1"),
        ("subject-jpeg-segment-table-short", segments(b"\x02\x00\x01"), "load", "OSError", "segment table",
         "§6.4.5.6 data holds the 6S - 1 bytes of the table"),
        ("subject-jpeg-segment-start", segments(b"\x02" + struct.pack(">HII", 1, len(stream), len(empty))
                                                + stream + empty), "load", "OSError", "segment starts",
         "§6.4.5.6 starts within 1 .. R - 1 (R = 1 MCU row here)"),
        ("subject-jpeg-segment-lengths", segments(b"\x01" + struct.pack(">I", len(stream) + 1) + stream),
         "load", "OSError", "segment lengths", "§6.4.5.6 the lengths add up to the rest of data"),
        ("subject-jpeg-segment-truncated", segments(b"\x01" + struct.pack(">I", len(stream) - 1) + stream[:-1]),
         "load", "OSError", "ends early", "§6.4.5.6 each segment is a coder-2 stream that ends exactly"),
        ("subject-jpeg-wrong-width", build(replace(jpeg_base, b"SUBJ", jpeg_subj[:18] + b"\x00\x09" + jpeg_subj[20:])),
         "load", "OSError", "9x6, the mask 8x6", "§6.4.1 width is the mask's"),
        ("subject-jpeg-two-components", build(replace(jpeg_base, b"SUBJ", jpeg_subj[:23] + b"\x02" + jpeg_subj[24:])),
         "load", "OSError", "component count", "§6.4.1 n is 1 or 3"),
        ("subject-jpeg-sampling-5", build(replace(jpeg_base, b"SUBJ", jpeg_subj[:24] + b"\x51" + jpeg_subj[25:])),
         "load", "OSError", "sampling factor", "§6.4.1 sampling factors 1-4"),
        ("subject-jpeg-table-kind", build(replace(jpeg_base, b"SUBJ", jpeg_subj[:31] + b"\x09" + jpeg_subj[32:])),
         "load", "OSError", "table kind 9", "§6.4.1 table kinds 0-3"),
        ("subject-jpeg-quality-0", build(replace(jpeg_base, b"SUBJ", jpeg_subj[:32] + b"\x00" + jpeg_subj[33:])),
         "load", "OSError", "quality out of range", "§6.4.1 quality 1-100"),
        ("subject-jpeg-truncated", build(replace(jpeg_base, b"SUBJ", jpeg_subj[:-2])), "load", "OSError",
         "ends early", "§6.4.5.1 the stream must end exactly"),
        ("subject-jpeg-trailing-bytes", build(replace(jpeg_base, b"SUBJ", jpeg_subj + b"\0")), "load", "OSError",
         "coefficients", "§6.4.5.1 no bytes left after the last decision"),
        ("subject-jpeg-brotli-short", build(replace(jpeg_base, b"SUBJ", jpeg_subj[:17] + b"\x01" + jpeg_subj[18:35]
                                                    + brotli.compress(b"\0" * 100))),
         "load", "OSError", "too short", "§6.4.4 S is 64N + 2E bytes"),
        ("subject-near-error-0", build(replace(near_base, b"SUBJ", subj_prefix(coding=5) + b"\x00" + near_subj[18:])),
         "load", "OSError", "maximum error N of 1 to 31", "§6.5 N is 1 to 31"),
        ("subject-near-error-32", build(replace(near_base, b"SUBJ", subj_prefix(coding=5) + b"\x20" + near_subj[18:])),
         "load", "OSError", "maximum error N of 1 to 31", "§6.5 N is 1 to 31"),
        ("subject-near-empty", build(replace(near_base, b"SUBJ", subj_prefix(coding=5))), "load", "OSError",
         "maximum error N", "§6.5 a payload with no byte"),
        ("subject-near-truncated", build(replace(near_base, b"SUBJ", near_subj[:-3])), "load", "OSError",
         "coding 5: subject stream ends", "§6.5, §6.3 a stream that ends early"),
        ("subject-unknown-coding-6", build(replace(near_base, b"SUBJ", subj_prefix(coding=6) + near_subj[17:])), "load",
         "OSError", "unknown PPAN SUBJ coding 6", "§6 codings 0 to 5"),
        # files that decode: what is malformed is skipped or ignored
        ("brotli-bomb-metadata", build(base[:1] + [(b"iccp", b"\x01" + brotli.compress(b"\0" * (17 << 20), quality=5))]
                                       + base[1:]), "none", "", "icc_profile",
         "§9, §10 metadata value at most 16 MiB: skipped"),
        ("metadata-unknown-method", build(base[:1] + [(b"xmpd", b"\x07<x/>")] + base[1:]), "none", "", "xmp",
         "§9 method 0 or 1: skipped"),
        ("clas-entry-cut-off", build(base[:1] + [(b"clas", b"\x00\x00\x00\x00\x09\x05per")] + base[1:]), "none", "",
         "subject_classes", "§9 a malformed clas value is skipped"),
        ("exif-not-tiff", build(base[:1] + [(b"exif", b"\x00JFIF\x00\x01junk")] + base[1:]), "none", "", "exif",
         "§9 an exif value starts II*\\0 or MM\\0*: skipped"),
        ("xmpd-not-utf8", build(base[:1] + [(b"xmpd", b"\x00<x:xmpmeta>\xff\xfe</x:xmpmeta>")] + base[1:]), "none",
         "", "xmp", "§9 an xmpd value is UTF-8: skipped"),
        ("metadata-after-background", build(base[:2] + [(b"exif", b"\x00MM\x00*\x00\x00\x00\x08\x00\x00")]
                                            + base[2:]), "none", "", "exif",
         "§9 metadata counts only between HEAD and BGND: skipped"),
        ("unknown-ancillary-chunk", build(base[:2] + [(b"qxyz", b"whatever")] + base[2:]), "none", "", "",
         "§2.1 unknown ancillary chunks are skipped"),
        ("bytes-after-done", build(base, b"\0garbage after DONE"), "none", "", "", "§2 bytes after DONE are ignored"),
    ]


# Inputs the fuzzers found, kept byte for byte: name -> (hex, at, error, message, breaks).
FINDINGS = {
    # fuzz_differential, first minutes: a BGND WebP with 9 bytes after its RIFF chunk was
    # decoded (libwebp ignores them); the spec reader rejects it.
    "fuzz-differential-riff-size": (
        "8950414e0d0a1a0a0000000e4845414401010000001e00000002060c0000d194b5e40000003e42474e44010000000500"
        "000001524946462c0000005745425056503820200000009001009d012a0500010002403825a400029d362b0000fefc0e"
        "64c8092000000000ab7d7e23000000104d41534b011b1400f8250500088a04160280d936c7bf0c270000002953554"
        "24a0200000000000000000000001e000000028f098000101a132e033a091e0d0a181e07400208241a1603cc43230e"
        "00000000444f4e4526b80d1f",
        "load", "OSError", "RIFF size", "§4 RIFF size = payload length - 8"),
}


# --- decompression bombs (issue 14): tiny files that declare a big image --------------------

BOMB_SIZE = (2048, 1536)  # the corpus's; fuzz/bombs.py builds the same at full size


def bombs(width: int = BOMB_SIZE[0], height: int = BOMB_SIZE[1]):
    """(name, data, at, error, message, what it tests): files of a few hundred bytes whose
    layers describe a whole width x height image. Each must decode (or fail) within the
    memory and time of spec §10 (tests/test_corpus.py measures them)."""
    scale = 8

    def layers(channels: int, mask_full: bool, subj: bytes) -> bytes:
        bw, bh = -(-width // scale), -(-height // scale)
        pix = np.full((bh, bw, 4 if channels == 4 else 3), 90, np.uint8)
        background = bgnd_prefix(bw, bh) + webp(pix, lossless=True)
        row = varints([0, width] if mask_full else [width])
        mask = b"\x01" + brotli.compress(row * height, quality=5)
        return build([(b"HEAD", head(width, height, channels, scale, 2)), (b"BGND", background),
                      (b"MASK", mask), (b"SUBJ", subj), (b"DONE", b"")])

    box = (0, 0, width, height)
    nblocks = 3 * -(-width // 8) * -(-height // 8)
    jpeg_head = struct.pack(">HHBB", width, height, 1, 3) + bytes([0x11, 0] * 3) + b"\x01\x02\x5a"

    def zeros(n: int, *more: tuple[int, int]) -> bytes:
        compressor = brotli.Compressor(quality=5)
        out = [compressor.process(bytes([0]) * n)]
        out += [compressor.process(bytes([value]) * count) for value, count in more]
        return b"".join(out) + compressor.finish()

    yield from [
        ("bomb-jpeg-brotli-zeros", layers(3, True, subj_prefix(4, box) + b"\x01" + jpeg_head + zeros(64 * nblocks)),
         "none", "", "", "coding 4, coder 1: every block stored, all zero (issue 14: 41x the image)"),
        ("bomb-jpeg-brotli-escapes", layers(3, True, subj_prefix(4, box) + b"\x01" + jpeg_head
                                            + zeros(0, (255, 64 * nblocks), (0, 128 * nblocks))),
         "none", "", "", "coding 4, coder 1: every value escaped, 3 x 64 N bytes decompressed"),
        ("bomb-jpeg-arith-short", layers(3, True, subj_prefix(4, box) + b"\x02" + jpeg_head + b"\0" * 64),
         "load", "OSError", "JPEG coefficients", "coding 4, coder 2: 64 bytes for every block, rejected where they fail"),
        ("bomb-cm-empty", layers(3, True, subj_prefix(3, box)), "load", "OSError", "ends before",
         "coding 3: an empty stream over the whole box, rejected at its first pixel"),
        ("bomb-med-zeros-rgba", layers(4, True, subj_prefix(2, box) + zeros(4 * width * height)), "none", "", "",
         "coding 2: the whole RGBA box predicted from zero residuals (issue 14: 5.9 GB at 13000 x 13000)"),
        ("bomb-empty-mask-rgba", layers(4, False, subj_prefix(0, (0, 0, 0, 0))), "none", "", "",
         "coding 0: the upsampled background alone (issue 14: 2.1 GB at 13000 x 13000)"),
    ]


# Findings not fixed yet (in code this corpus's owners may not change): name -> reason.
# test_corpus.py marks them xfail(strict=True), so a fix shows up as an unexpected pass.
XFAIL: dict[str, str] = {}


def animated(width: int, height: int) -> bytes:
    """An animated WebP of one 1 x 1 frame on a width x height canvas."""
    frame = vp8l(1, 1)
    anmf = webp_chunk(b"ANMF", b"\0" * 6 + (0).to_bytes(3, "little") * 2 + b"\x64\0\0\0" + frame)
    return riff(vp8x(width, height, flags=0x02) + webp_chunk(b"ANIM", b"\0\0\0\0\0\0") + anmf)


def main() -> None:
    manifest = {}
    for old in HERE.glob("*.ppan"):
        old.unlink()
    found = ((name, bytes.fromhex(h), *rest) for name, (h, *rest) in FINDINGS.items())
    for name, data, at, error, message, breaks in (*malformed(), *found, *bombs()):
        assert name not in manifest, name
        (HERE / f"{name}.ppan").write_bytes(data)
        if at == "none":
            manifest[f"{name}.ppan"] = {"breaks": breaks, "at": at, "absent_info": message}
        else:
            manifest[f"{name}.ppan"] = {"breaks": breaks, "at": at, "error": error, "message": message}
        if name.startswith("bomb-"):
            manifest[f"{name}.ppan"]["declares"] = list(BOMB_SIZE)
    for name, reason in XFAIL.items():
        manifest[f"{name}.ppan"]["xfail"] = reason
    (HERE / "valid.ppan").write_bytes(build(encode()))
    manifest["valid.ppan"] = {"breaks": "nothing: the base the others are made from", "at": "none",
                              "absent_info": ""}
    (HERE / "expected.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    sizes = sorted(len((HERE / f).read_bytes()) for f in manifest)
    print(f"{len(manifest)} files, {sizes[0]}..{sizes[-1]} bytes")


if __name__ == "__main__":
    main()
