"""Shared pieces of the PPAN fuzz harnesses (see fuzz/README.md).

- ``allowed()``: the only exceptions a decoder may raise on hostile input.
- ``configure()``: the fuzzing configuration (smaller pixel limits, warnings off).
- ``guarded()``: runs a decoder call, swallows allowed exceptions, checks time and memory.
- fixtures for the layer harnesses: fixed valid headers (and masks) fed arbitrary payloads.
- ``parse_file``/``build_file`` and ``structured_mutate``: a chunk-aware mutator that keeps
  CRCs right so that mutations reach the layer decoders.
- ``byte_mutate``: a plain byte mutator for in-process runs without libFuzzer.

Nothing here imports atheris; ``main()`` does, only when a harness runs under libFuzzer.
Nor does importing this module import Pillow or peterpan_format: a harness calls
``setup()`` first, so that under libFuzzer the decoder is imported instrumented.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import struct
import sys
import time
import warnings
import zlib
from pathlib import Path

import brotli
import numpy as np

FUZZ_DIR = Path(__file__).resolve().parent
SEEDS_DIR = FUZZ_DIR / "seeds"

SIGNATURE = b"\x89PAN\r\n\x1a\n"

# Fuzzing configuration. The decoder's own limits apply unchanged, but the per-image
# pixel budget and the metadata cap are lowered so that every input runs in milliseconds
# and any allocation beyond them stands out (a valid file may still declare up to
# 2 x FUZZ_MAX_IMAGE_PIXELS pixels).
FUZZ_MAX_IMAGE_PIXELS = 1 << 18
FUZZ_MAX_METADATA = 1 << 20
# Growth of the peak RSS allowed for one input: the largest image the configuration
# allows is 2^19 pixels x 4 channels = 2 MiB, and decoding holds a few copies of it.
RSS_BUDGET = 96 << 20
TIME_BUDGET = 5.0  # seconds per input (libFuzzer runs use -timeout)


_allowed: tuple[type[BaseException], ...] = ()


def allowed() -> tuple[type[BaseException], ...]:
    """The exceptions a decoder may raise on hostile input (subclasses included)."""
    global _allowed
    if not _allowed:
        from PIL import Image

        _allowed = (SyntaxError, OSError, ValueError, EOFError, Image.DecompressionBombError)
    return _allowed


_configured = False


def setup(instrument: bool) -> None:
    """Call first in a harness, before it imports Pillow or peterpan_format.

    ``instrument`` (true when the harness runs under libFuzzer) imports the decoder under
    atheris coverage instrumentation and applies the fuzzing configuration; in-process
    runs (``run_in_process``) apply it only while they run.
    """
    global _instrumented, signal_size, signal_error
    if instrument:
        if not _instrumented:
            import atheris

            instrumented_imports()
            signal_size = atheris.instrument_func(signal_size)
            signal_error = atheris.instrument_func(signal_error)
            _instrumented = True
        configure()


_instrumented = False


def configure() -> None:
    """Apply the fuzzing configuration for the rest of the process (idempotent)."""
    global _configured
    if _configured:
        return
    from PIL import Image, ImageFile

    import peterpan_format  # noqa: F401  (registers the plugin)
    from peterpan_format import metadata

    Image.MAX_IMAGE_PIXELS = FUZZ_MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    metadata.MAX_VALUE = FUZZ_MAX_METADATA
    warnings.simplefilter("ignore")
    _configured = True
    _warm_up()


@contextlib.contextmanager
def configured():
    """The fuzzing configuration for a block, restored afterwards (for in-process runs)."""
    from PIL import Image, ImageFile

    from peterpan_format import metadata

    global _configured
    saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, metadata.MAX_VALUE, _configured
    with warnings.catch_warnings():
        _configured = False
        try:
            configure()
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, metadata.MAX_VALUE, _configured = saved


_warmed = False


def _warm_up() -> None:
    """Decode a file of each mode and subject coding once, so that loading (or compiling)
    the Numba kernels is not charged to the first fuzz input's time and memory."""
    global _warmed
    if _warmed:
        return
    _warmed = True
    from PIL import Image

    from peterpan_format import subject

    for channels in (1, 3, 4):
        for coding in subject.CODINGS:  # every subject coding there is
            data = encode_file(9, 7, channels, "ellipse", background_scale=2, feather=2, subject_coding=coding)
            with Image.open(io.BytesIO(data)) as im:
                im.load()


class ResourceOveruse(AssertionError):
    """An input took more time or memory than the configuration allows."""


class PeakRSS:
    """Peak resident memory growth of the process, per input (Linux ``clear_refs``)."""

    def __init__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.available = self._read("VmHWM") > 0
        except OSError:
            self.available = False

    @staticmethod
    def _read(field: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def start(self) -> None:
        if self.available:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self.base = self._read("VmRSS")

    def growth(self) -> int:
        return self._read("VmHWM") - self.base if self.available else 0


_rss = None
CHECK_RESOURCES = os.environ.get("PPAN_FUZZ_CHECK_RESOURCES", "1") != "0"


@contextlib.contextmanager
def guarded(what: str = ""):
    """Swallow the allowed exceptions; let anything else escape (a finding)."""
    global _rss
    if CHECK_RESOURCES and _rss is None:
        _rss = PeakRSS()
    if CHECK_RESOURCES:
        _rss.start()
        t0 = time.perf_counter()
    try:
        yield
    except allowed():
        pass
    if CHECK_RESOURCES:
        elapsed = time.perf_counter() - t0
        grown = _rss.growth()
        if grown > RSS_BUDGET:
            raise ResourceOveruse(f"{what}: peak RSS grew by {grown >> 20} MiB (budget {RSS_BUDGET >> 20} MiB)")
        if elapsed > TIME_BUDGET:
            raise ResourceOveruse(f"{what}: took {elapsed:.1f} s (budget {TIME_BUDGET} s)")


# ---------------------------------------------------------------------------
# Coverage signals for what atheris cannot see
# ---------------------------------------------------------------------------
# atheris measures coverage of Python code only; the Numba kernels, Brotli and libwebp are
# invisible, so an input that drives a kernel somewhere new looks like nothing new. The
# harnesses report outcomes through these two functions; under libFuzzer they are
# instrumented, so each branch taken is a coverage feature and such inputs are kept.


def signal_size(n: int) -> None:
    """A feature per size class of ``n`` (a count of runs, pixels, bytes)."""
    b = int(n).bit_length()
    if b == 0:
        pass
    elif b == 1:
        pass
    elif b == 2:
        pass
    elif b == 3:
        pass
    elif b == 4:
        pass
    elif b <= 6:
        pass
    elif b <= 8:
        pass
    elif b <= 10:
        pass
    elif b <= 13:
        pass
    elif b <= 16:
        pass
    else:
        pass


def signal_error(error: BaseException | None) -> None:
    """A feature per kind of rejection (by its message)."""
    m = str(error) if error is not None else ""
    if error is None:
        pass
    elif "passes the end" in m:
        pass
    elif "zero-length" in m:
        pass
    elif "before the last row" in m:
        pass
    elif "trailing bytes" in m:
        pass
    elif "varint" in m:
        pass
    elif "decompress to more" in m:
        pass
    elif "truncated Brotli" in m:
        pass
    elif "corrupt Brotli" in m:
        pass
    elif "residuals" in m:
        pass
    elif "does not match the mask" in m:
        pass
    elif "canvas" in m:
        pass
    elif "RIFF" in m or "exactly one" in m or "animated" in m:
        pass
    elif "invalid WebP" in m:
        pass
    elif "WebP is" in m:
        pass
    elif "coding" in m:
        pass
    else:
        pass


# ---------------------------------------------------------------------------
# Chunks
# ---------------------------------------------------------------------------


def chunk(chunk_type: bytes, data: bytes, length: int | None = None, crc: int | None = None) -> bytes:
    """One chunk; ``length`` and ``crc`` override the true values (to build lying chunks)."""
    if crc is None:
        crc = zlib.crc32(data, zlib.crc32(chunk_type))
    return struct.pack(">I4s", len(data) if length is None else length, chunk_type) + data + struct.pack(">I", crc)


def parse_file(data: bytes) -> tuple[list[list], bytes] | None:
    """[[type, payload], ...] and the trailing bytes of a file with a PPAN signature, or None.

    Lenient: stops at the first chunk that does not fit; what follows is the tail.
    """
    if not data.startswith(SIGNATURE):
        return None
    chunks, pos = [], len(SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if pos + 12 + length > len(data):
            break
        chunks.append([data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]])
        pos += 12 + length
    return chunks, data[pos:]


def build_file(chunks, tail: bytes = b"") -> bytes:
    return SIGNATURE + b"".join(chunk(t, d) for t, d in chunks) + tail


def header_bytes(width, height, channels, scale, feather, version=1, reserved=0) -> bytes:
    return struct.pack(">BBIIBBH", version, channels, width, height, scale, feather, reserved)


# ---------------------------------------------------------------------------
# Deterministic images and masks (seeds, layer-harness fixtures, the corpus)
# ---------------------------------------------------------------------------


def synthetic_pixels(width: int, height: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * (3 + c) + y * (5 - c) + 40 * c) % 256 for c in range(channels)], axis=2)
    noise = rng.integers(-12, 13, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def synthetic_mask(width: int, height: int, kind: str) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    if kind == "empty":
        return np.zeros((height, width), bool)
    if kind == "full":
        return np.ones((height, width), bool)
    if kind == "pixel":
        return (x == width // 2) & (y == height // 3)
    if kind == "ellipse":
        return ((x - width * 0.45) / (width * 0.3 + 0.5)) ** 2 + ((y - height * 0.5) / (height * 0.35 + 0.5)) ** 2 <= 1
    if kind == "ring":  # a subject with a hole and a separate blob: box holds background pixels
        r2 = (x - width * 0.4) ** 2 + (y - height * 0.5) ** 2
        outer = min(width, height) * 0.4
        return ((r2 <= outer**2) & (r2 >= (outer * 0.5) ** 2)) | ((x >= width - 3) & (y < 2))
    if kind == "stripes":  # many runs per row
        return ((x // 2 + y) % 3 == 0)
    raise ValueError(kind)


def image_of(pixels: np.ndarray):
    from PIL import Image

    channels = pixels.shape[2]
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    return Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode)


def encode_file(width, height, channels, mask_kind="ellipse", seed=0, **params) -> bytes:
    """A valid .ppan file of a synthetic image (via the Pillow plugin).

    With subject_coding="jpeg" the image is first saved as a JPEG and decoded, so that
    SUBJ coding 4 can keep its coefficients (an RGBA image uses "auto" instead);
    subject_coding="cm-near" writes SUBJ coding 5 with a maximum error of 1 to 4.
    """
    import peterpan_format  # noqa: F401  (registers the plugin)
    from PIL import Image

    out = io.BytesIO()
    image = image_of(synthetic_pixels(width, height, channels, seed))
    if params.get("subject_coding") == "cm-near":
        params.update(subject_coding="cm", subject="near-lossless", max_error=1 + seed % 4)
    if params.get("subject_coding") == "jpeg" and channels == 4:
        params["subject_coding"] = "auto"
    elif params.get("subject_coding") == "jpeg":
        jpeg = io.BytesIO()
        image.save(jpeg, "JPEG", quality=80)
        params["jpeg_source"] = jpeg.getvalue()
        image = Image.open(jpeg)
    image.save(out, format="PPAN", mask=synthetic_mask(width, height, mask_kind), **params)
    return out.getvalue()


# Layer-harness fixtures: (width, height, channels, scale, feather, mask kind). The first
# input byte picks one; the rest of the input is the layer's payload.
LAYER_FIXTURES = [
    (20, 14, 3, 2, 2, "ellipse"),
    (13, 9, 1, 3, 1, "pixel"),
    (8, 8, 4, 1, 0, "full"),
    (33, 5, 3, 8, 32, "ring"),
    (1, 1, 1, 1, 0, "empty"),
    (24, 18, 4, 4, 4, "stripes"),
    (17, 3, 1, 5, 3, "ellipse"),
]


def fixture(index: int):
    """(Header, mask uint8[H, W]) of LAYER_FIXTURES[index % len]."""
    from peterpan_format.container import MODES, Header

    width, height, channels, scale, feather, kind = LAYER_FIXTURES[index % len(LAYER_FIXTURES)]
    header = Header(width, height, MODES[channels], scale, feather)
    return header, np.ascontiguousarray(synthetic_mask(width, height, kind), dtype=np.uint8)


def fixture_layers(index: int, coding: str = "auto") -> dict[bytes, bytes]:
    """The chunk payloads of a valid file for fixture ``index``."""
    width, height, channels, scale, feather, kind = LAYER_FIXTURES[index]
    data = encode_file(width, height, channels, kind, seed=index, background_scale=scale, feather=feather,
                       subject_coding=coding, icc_profile=b"icc-profile" * 5)
    chunks, _ = parse_file(data)
    return {t: d for t, d in chunks}


# ---------------------------------------------------------------------------
# Mutators
# ---------------------------------------------------------------------------

INTERESTING_U32 = [0, 1, 2, 7, 8, 9, 14, 127, 128, 255, 256, 16383, 16384, 65535, 65536,
                   (1 << 30) - 1, 1 << 30, (1 << 30) + 1, (1 << 31) - 1, 1 << 31, 0xFFFFFFFF]
INTERESTING_U8 = [0, 1, 2, 3, 4, 5, 8, 9, 32, 33, 0x7F, 0x80, 0xFF]


def byte_mutate(data: bytes, max_size: int, rng: random.Random, pool=()) -> bytes:
    """A few libFuzzer-like byte mutations (bit flips, interesting values, insert, delete, splice)."""
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 5))):
        op = rng.randrange(10)
        n = len(buf)
        if op == 0 and n:
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[rng.randrange(n)] = rng.choice(INTERESTING_U8) if rng.random() < 0.5 else rng.randrange(256)
        elif op == 2 and n >= 4:
            i = rng.randrange(n - 3)
            value = rng.choice(INTERESTING_U32)
            buf[i : i + 4] = value.to_bytes(4, rng.choice(("big", "little")))
        elif op == 3:
            i = rng.randrange(n + 1)
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        elif op == 4 and n:
            i = rng.randrange(n)
            del buf[i : i + rng.randrange(1, 17)]
        elif op == 5 and n:
            i = rng.randrange(n)
            j = rng.randrange(i, min(n, i + 64) + 1)
            k = rng.randrange(n + 1)
            buf[k:k] = buf[i:j]
        elif op == 6 and n:
            del buf[rng.randrange(n) :]
        elif op == 7 and pool:
            other = rng.choice(pool)
            if other:
                i = rng.randrange(len(other))
                buf[rng.randrange(n + 1) :] = other[i:]
        elif op == 8 and n >= 2:
            i = rng.randrange(n)
            j = rng.randrange(n)
            buf[i], buf[j] = buf[j], buf[i]
        elif n:
            i = rng.randrange(n)
            buf[i] = (buf[i] + rng.choice((-1, 1, 16, -16))) & 0xFF
    return bytes(buf[:max_size])


def _brotli_bombs() -> list[bytes]:
    return [
        brotli.compress(b"\x00" * (1 << 26), quality=1),  # 64 MiB of zero runs
        brotli.compress(b"\x01" * (1 << 24), quality=1),  # 16 MiB of ones
        brotli.compress(b"\x80" * (1 << 20), quality=1),  # 1 MiB of unfinished varints
    ]


_BOMBS: list[bytes] = []


def bombs() -> list[bytes]:
    if not _BOMBS:
        _BOMBS.extend(_brotli_bombs())
    return _BOMBS


def _try_brotli(data: bytes, limit: int = 1 << 20) -> bytes | None:
    try:
        d = brotli.Decompressor()
        out = d.process(data, output_buffer_limit=limit)
        return out if d.is_finished() else None
    except brotli.error:
        return None


def _varints(values) -> bytes:
    out = bytearray()
    for v in values:
        while v >= 128:
            out.append((v & 127) | 128)
            v >>= 7
        out.append(v)
    return bytes(out)


def _mutate_runs(runs: bytes, mutate, rng: random.Random) -> bytes:
    """Mutate a decompressed MASK runs stream, mostly at the varint level."""
    values, pos = [], 0
    while pos < len(runs):
        v, shift = 0, 0
        while pos < len(runs):
            b = runs[pos]
            pos += 1
            v |= (b & 127) << shift
            shift += 7
            if b < 128:
                break
        values.append(v)
    op = rng.randrange(6)
    if op == 0 or not values:
        return mutate(runs)
    i = rng.randrange(len(values))
    if op == 1:
        values[i] = rng.choice((0, 1, values[i] + 1, max(values[i] - 1, 0), 65535, 65536, (1 << 32) - 1, 1 << 32))
    elif op == 2:
        del values[i]
    elif op == 3:
        values.insert(i, rng.choice((0, 1, 2, values[i])))
    elif op == 4:
        values.append(rng.choice((0, 1, 5)))
    else:
        out = _varints(values)
        return out + bytes([0x80] * rng.randrange(1, 6)) if rng.random() < 0.5 else out + b"\x00"
    return _varints(values)


def _mutate_header(payload: bytes, rng: random.Random) -> bytes:
    if len(payload) != 14:
        return header_bytes(rng.choice((1, 8, 20)), rng.choice((1, 6, 14)), rng.choice((1, 3, 4)), 2, 1)
    fields = list(struct.unpack(">BBIIBBH", payload))
    i = rng.randrange(7)
    if i in (2, 3) and rng.random() < 0.5:  # still valid: reaches the layer size checks
        fields[i] = max(1, fields[i] + rng.choice((-8, -1, 1, 8))) & 0xFFFFFFFF
    elif i in (4, 5) and rng.random() < 0.5:
        fields[i] = rng.randrange(1, 9) if i == 4 else rng.randrange(0, 33)
    elif i in (2, 3):
        fields[i] = rng.choice(INTERESTING_U32 + [fields[i] + 1, max(fields[i] - 1, 0), fields[i] * 2]) & 0xFFFFFFFF
    elif i == 6:
        fields[i] = rng.choice((0, 1, 0xFFFF))
    else:
        fields[i] = rng.choice(INTERESTING_U8 + [fields[i] + 1, fields[i] - 1]) & 0xFF
    return struct.pack(">BBIIBBH", *fields)


def _set_u32(payload: bytes, offset: int, rng: random.Random, fmt: str = ">I") -> bytes:
    if len(payload) < offset + 4:
        return payload
    old = struct.unpack_from(fmt, payload, offset)[0]
    new = rng.choice(INTERESTING_U32 + [old + 1, max(old - 1, 0), old + 2, max(old - 2, 0)]) & 0xFFFFFFFF
    return payload[:offset] + struct.pack(fmt, new) + payload[offset + 4 :]


def _mutate_webp(webp: bytes, mutate, rng: random.Random) -> bytes:
    """Mutate the RIFF/chunk headers of an embedded WebP (size fields, fourcc, canvas)."""
    op = rng.randrange(7)
    if op == 0:
        return _set_u32(webp, 4, rng, "<I")  # RIFF size
    if op == 1:
        return _set_u32(webp, 16, rng, "<I")  # first chunk size
    if op == 2 and len(webp) >= 16:
        return webp[:12] + rng.choice((b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF")) + webp[16:]
    if op == 3 and len(webp) >= 30:  # canvas / frame size bytes
        i = rng.randrange(21, 30)
        return webp[:i] + bytes([rng.choice(INTERESTING_U8)]) + webp[i + 1 :]
    if op == 4:
        extra = rng.choice((b"JUNK", chunk(b"EXIF", b"x")[4:], b"\x00"))
        return webp + extra
    if op == 5:
        return webp[: rng.randrange(len(webp) + 1)]
    return mutate(webp)


def _mutate_layer(chunk_type: bytes, payload: bytes, mutate, rng: random.Random, pool) -> bytes:
    if chunk_type == b"HEAD":
        return _mutate_header(payload, rng)
    if chunk_type == b"BGND" and len(payload) >= 9:
        op = rng.randrange(5)
        if op == 0:
            return bytes([rng.choice((0, 1, 2, 255))]) + payload[1:]
        if op in (1, 2):
            return _set_u32(payload, 1 + 4 * (op - 1), rng)
        if op == 3:
            return payload[:9] + _mutate_webp(payload[9:], mutate, rng)
    if chunk_type == b"MASK" and payload:
        op = rng.randrange(5)
        if op == 0:
            return bytes([rng.choice((0, 2, 255))]) + payload[1:]
        if op == 1:
            return payload[:1] + rng.choice(bombs())
        if op <= 3:
            runs = _try_brotli(payload[1:])
            if runs is not None:
                return payload[:1] + brotli.compress(_mutate_runs(runs, mutate, rng), quality=1)
    if chunk_type == b"SUBJ" and len(payload) >= 17:
        op = rng.randrange(7)
        if op == 0:
            return bytes([rng.choice((0, 1, 2, 3, 255))]) + payload[1:]
        if op == 1:
            return _set_u32(payload, 1 + 4 * rng.randrange(4), rng)
        if op == 2 and payload[0] == 2:
            residuals = _try_brotli(payload[17:])
            if residuals is not None:
                return payload[:17] + brotli.compress(mutate(residuals), quality=1)
        if op == 3:
            return payload[:17] + rng.choice(bombs())
        if op == 4 and payload[0] == 1:
            return payload[:17] + _mutate_webp(payload[17:], mutate, rng)
    if chunk_type in (b"exif", b"iccp", b"xmpd"):
        op = rng.randrange(4)
        if op == 0:
            return b"\x01" + rng.choice(bombs())
        if op == 1:
            return bytes([rng.choice((0, 1, 2))]) + payload[1:]
        if op == 2:
            value = _try_brotli(payload[1:]) if payload[:1] == b"\x01" else payload[1:]
            if value is not None:
                return b"\x01" + brotli.compress(mutate(value), quality=1)
    return mutate(payload)


_EXTRA_CHUNKS = [
    (b"exif", b"\x00MM\x00*\x00\x00\x00\x08"), (b"iccp", b"\x00icc"), (b"xmpd", b"\x01" + brotli.compress(b"<x/>")),
    (b"abcd", b"whatever"), (b"ABCD", b""), (b"HEAD", b""), (b"DONE", b""), (b"BGND", b"\x01"), (b"zzzz", b""),
]


def structured_mutate(data: bytes, max_size: int, rng: random.Random, mutate=None, pool=()) -> bytes:
    """Mutate a PPAN file chunk by chunk and fix the CRCs (most of the time).

    ``mutate(bytes) -> bytes`` mutates a payload's bytes (libFuzzer's mutator under atheris,
    ``byte_mutate`` otherwise). ``pool`` is a list of other files to take chunks from.
    """
    if mutate is None:
        def mutate(b):
            return byte_mutate(b, max(len(b) * 2, 64), rng, pool)

    parsed = parse_file(data)
    if parsed is None or not parsed[0]:
        if pool and rng.random() < 0.5:
            parsed = parse_file(rng.choice(pool))
        if parsed is None or not parsed[0]:
            return mutate(data)[:max_size]
    chunks, tail = parsed
    chunks = [list(c) for c in chunks]
    length_lie = crc_lie = None
    for _ in range(rng.choice((1, 1, 1, 1, 2, 3))):
        op = rng.randrange(100)
        i = rng.randrange(len(chunks)) if chunks else 0
        if op < 60 and chunks:  # payload, layer-aware (DONE's rarely: it must be empty)
            if chunks[i][0] == b"DONE" and len(chunks) > 1 and rng.random() < 0.9:
                i = rng.randrange(len(chunks) - 1)
            chunks[i][1] = _mutate_layer(chunks[i][0], chunks[i][1], mutate, rng, pool)
        elif op < 64 and chunks:  # chunk type
            t = chunks[i][0]
            choice = rng.randrange(4)
            if choice == 0:
                t = bytes([t[0] ^ 0x20]) + t[1:]
            elif choice == 1:
                t = rng.choice((b"HEAD", b"BGND", b"MASK", b"SUBJ", b"DONE", b"exif", b"iccp", b"xmpd", b"qqqq"))
            elif choice == 2:
                t = t[:3] + bytes([rng.choice((0x20, 0x31, 0x5B, 0x60, 0x7B, 0xC1))])
            else:
                t = bytes(rng.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") for _ in range(4))
            chunks[i][0] = t
        elif op < 67 and chunks:  # delete
            del chunks[i]
        elif op < 70 and chunks:  # duplicate
            chunks.insert(rng.randrange(len(chunks) + 1), list(chunks[i]))
        elif op < 73 and len(chunks) >= 2:  # swap / move
            j = rng.randrange(len(chunks))
            chunks[i], chunks[j] = chunks[j], chunks[i]
        elif op < 77:  # insert an extra chunk
            chunks.insert(rng.randrange(len(chunks) + 1), list(rng.choice(_EXTRA_CHUNKS)))
        elif op < 82 and pool:  # take a chunk from another file
            other = parse_file(rng.choice(pool))
            if other and other[0]:
                donor = list(rng.choice(other[0]))
                same = [k for k, c in enumerate(chunks) if c[0] == donor[0]]
                if same and rng.random() < 0.8:
                    chunks[rng.choice(same)] = donor
                else:
                    chunks.insert(rng.randrange(len(chunks) + 1), donor)
        elif op < 86 and chunks:  # a lying length field
            length_lie = (i, rng.choice(INTERESTING_U32 + [len(chunks[i][1]) + rng.choice((-2, -1, 1, 2, 100))]))
        elif op < 88 and chunks:  # a wrong CRC
            crc_lie = i
        elif op < 93:  # truncate
            out = build_file(chunks, tail)
            return out[: rng.randrange(len(out) + 1)][:max_size]
        elif op < 96:  # bytes after DONE
            tail += mutate(tail or b"\x00\x00\x00\x00junk")
        else:
            return mutate(build_file(chunks, tail))[:max_size]
    parts = [SIGNATURE]
    for k, (t, d) in enumerate(chunks):
        length = length_lie[1] & 0xFFFFFFFF if length_lie and length_lie[0] == k else None
        crc = (zlib.crc32(d, zlib.crc32(t)) ^ 0x1) if crc_lie == k else None
        parts.append(chunk(t, d, length, crc))
    parts.append(tail)
    return b"".join(parts)[:max_size]


# ---------------------------------------------------------------------------
# Seeds and libFuzzer entry point
# ---------------------------------------------------------------------------


# Seed folder of each harness under fuzz/seeds/.
SEED_FOLDERS = {
    "fuzz_open": "files",
    "fuzz_container": "files",
    "fuzz_structured": "files",
    "fuzz_differential": "files",
    "fuzz_mask": "mask",
    "fuzz_background": "background",
    "fuzz_subject": "subject",
    "fuzz_metadata": "metadata",
}
HARNESSES = list(SEED_FOLDERS)


def load_seeds(name: str) -> list[bytes]:
    """The seed files of a harness from fuzz/seeds/<name> (make_seeds.py writes them)."""
    folder = SEEDS_DIR / name
    if not folder.is_dir():
        return []
    return [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()]


def instrumented_imports():
    """Import the decoder under atheris coverage instrumentation (not the Numba kernels)."""
    import atheris

    # Numba cannot compile instrumented bytecode, so every module that uses Numba stays out
    # (its kernels are compiled code anyway). atheris excludes exact module names only.
    package = FUZZ_DIR.parent / "src" / "peterpan_format"
    excluded = ["peterpan_format._kernels", "peterpan_format.segment"]
    for path in package.rglob("*.py"):
        if "numba" in path.read_text(errors="replace"):
            parts = path.relative_to(package.parent).with_suffix("").parts
            excluded.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    with atheris.instrument_imports(include=["peterpan_format"], exclude=excluded):
        import peterpan_format  # noqa: F401
        from peterpan_format import codec, container, metadata, streams, subject  # noqa: F401
        from peterpan_format import PpanImagePlugin  # noqa: F401


def main(test_one_input, structured: bool = False, seeds_name: str | None = None) -> None:
    """Run a harness under libFuzzer (atheris); ``structured`` adds the chunk-aware mutator."""
    import atheris

    setup(True)
    kwargs = {}
    if structured:
        pool = load_seeds(seeds_name) if seeds_name else []

        def custom_mutator(data, max_size, seed):
            rng = random.Random(seed)
            if rng.random() < 0.1:
                return atheris.Mutate(data, max_size)
            try:
                return structured_mutate(data, max_size, rng, lambda b: atheris.Mutate(b, max(2 * len(b), 64)), pool)
            except Exception:  # noqa: BLE001  (a mutator bug is not a decoder finding; the CI
                return atheris.Mutate(data, max_size)  # smoke test runs the mutator unguarded)

        kwargs["custom_mutator"] = custom_mutator
    atheris.Setup(sys.argv, test_one_input, **kwargs)
    atheris.Fuzz()


# ---------------------------------------------------------------------------
# In-process runs (CI smoke test, replay), without libFuzzer
# ---------------------------------------------------------------------------


class Finding(AssertionError):
    """A harness failed on an input; ``data`` is the input."""

    def __init__(self, harness: str, data: bytes, error: BaseException):
        super().__init__(f"{harness} failed on a {len(data)}-byte input: {error!r}\ninput: {data[:400].hex()}")
        self.harness, self.data, self.error = harness, data, error


def load_harness(name: str):
    """Import fuzz/<name>.py as a module (not instrumented)."""
    import importlib

    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))
    return importlib.import_module(name)


def run_in_process(name: str, seeds: list[bytes], mutations: int, seed: int = 0,
                   max_size: int = 1 << 16, deadline: float | None = None) -> int:
    """Run harness ``name`` over ``seeds`` then ``mutations`` mutated inputs; return the count.

    Structured harnesses use ``structured_mutate``, the others ``byte_mutate`` (with
    splicing). Stops early at ``deadline`` (a ``time.monotonic()`` value). Raises
    ``Finding`` on the first input that fails.
    """
    module = load_harness(name)
    structured = name in ("fuzz_structured", "fuzz_differential")
    rng = random.Random(seed)
    pool = [s for s in seeds if s]
    count = 0

    def run(data):
        try:
            module.TestOneInput(data)
        except Exception as exc:  # noqa: BLE001
            raise Finding(name, data, exc) from exc

    with configured():
        for data in seeds:
            run(data)
            count += 1
        for _ in range(mutations):
            if deadline is not None and time.monotonic() > deadline:
                break
            base = rng.choice(pool) if pool else b""
            if structured or (name in ("fuzz_open", "fuzz_container") and rng.random() < 0.5):
                data = structured_mutate(base, max_size, rng, pool=pool)
            else:
                data = byte_mutate(base, max_size, rng, pool)
            run(data)
            count += 1
    return count
