"""An independent PPAN decoder written only from spec/FORMAT.md.

This module is a conformance check of the specification: it implements what the
text says, section by section, and nothing from the project's own code.  It is
written for clarity, not speed (plain Python loops over pixels).

Public API:
    read_ppan(data) -> SpecImage
    SpecError       raised for every violation the spec says a decoder rejects

Choices made where the spec is silent or ambiguous are marked "ASSUMPTION".
SUBJ coding 4 (JPEG coefficients, §6.4) decodes the subject pixels only (§6).
SUBJ coding 5 (§6.5) is decoded by the coding-3 decoder (§6.3) with a maximum error N.
"""

from __future__ import annotations

import io
import math
import re
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import brotli
import numpy as np
from PIL import Image

SPEC_PATH = Path(__file__).resolve().parent.parent / "spec" / "FORMAT.md"

SIGNATURE = b"\x89PAN\r\n\x1a\n"  # §2
CRITICAL_ORDER = ("HEAD", "BGND", "MASK", "SUBJ", "DONE")  # §2
METADATA_TYPES = ("exif", "iccp", "xmpd")  # §9
MAX_CHUNK_LENGTH = 1 << 30  # §2.1
MAX_METADATA = 16 << 20  # §9 ("16 MiB")
MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # §3

class SpecError(Exception):
    """A violation that FORMAT.md says a decoder must reject."""


@dataclass(eq=False)
class SpecImage:
    mode: str
    width: int
    height: int
    scale: int
    feather: int
    mask: np.ndarray  # uint8 (H, W), 0/1
    pixels: np.ndarray  # uint8 (H, W, C), fully reconstructed (§8)
    background: np.ndarray  # uint8 (bh, bw, C), the decoded B (§4)
    metadata: dict = field(default_factory=dict)  # chunk type -> value bytes (§9)
    chunks: list = field(default_factory=list)  # chunk types in file order


# ---------------------------------------------------------------------------
# §1 Conventions
# ---------------------------------------------------------------------------


def _make_crc_table():
    # Right-shifting (reflected) CRC-32 with polynomial 0xEDB88320 as §1 describes.
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _make_crc_table()


def crc32_spec(data: bytes) -> int:
    """CRC-32 exactly as §1: reflected 0xEDB88320, init 0xFFFFFFFF, final XOR 0xFFFFFFFF."""
    c = 0xFFFFFFFF
    for byte in data:
        c = _CRC_TABLE[(c ^ byte) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


# zlib.crc32 is used for speed; check it is the CRC the spec describes.
assert crc32_spec(b"123456789") == 0xCBF43926 == zlib.crc32(b"123456789")
assert crc32_spec(bytes(range(256)) * 3) == zlib.crc32(bytes(range(256)) * 3)


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def _u8(b, off):
    return b[off]


def _u16(b, off):
    return int.from_bytes(b[off : off + 2], "big")


def _u32(b, off):
    return int.from_bytes(b[off : off + 4], "big")


def read_varint(buf: bytes, pos: int):
    """Unsigned LEB128 (§1). Returns (value, new_pos).

    Rejects: a varint longer than 5 bytes, a value >= 2^32, a non-canonical
    encoding (a last byte 0x00 after another byte) and a varint cut off by the end
    of the buffer.
    """
    value = 0
    for i in range(5):
        if pos >= len(buf):
            raise SpecError("varint truncated")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise SpecError("varint not canonical")
            if value >= 1 << 32:
                raise SpecError("varint value >= 2^32")
            return value, pos
    raise SpecError("varint longer than 5 bytes")


def brotli_capped(data: bytes, cap: int) -> bytes:
    """Decompress a complete Brotli stream, rejecting as soon as output exceeds `cap`.

    Also rejects a corrupt stream, a stream that does not end within `data`
    (incomplete) and bytes after the end of the stream (ASSUMPTION: "a complete
    Brotli stream that decompresses to x" leaves no room for trailing bytes).
    """
    d = brotli.Decompressor()
    out = bytearray()
    limit = cap + 1
    try:
        chunk = d.process(data, output_buffer_limit=limit)
        out += chunk
        if len(out) > cap:
            raise SpecError(f"brotli output exceeds the cap of {cap} bytes")
        while not d.can_accept_more_data():
            chunk = d.process(b"", output_buffer_limit=limit)
            out += chunk
            if len(out) > cap:
                raise SpecError(f"brotli output exceeds the cap of {cap} bytes")
            if not chunk and not d.can_accept_more_data():  # pragma: no cover - defensive
                break
    except brotli.error as e:
        raise SpecError(f"bad brotli stream: {e}") from None
    if not d.is_finished():
        raise SpecError("brotli stream incomplete")
    return bytes(out)


# ---------------------------------------------------------------------------
# §8.1 weights: parsed from the normative table, and checked against the formula
# ---------------------------------------------------------------------------

_ROW_RE = re.compile(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|" + r"\s*(-?\d+)\s*\|" * 5 + r"\s*$")


def parse_weight_table(spec_text: str):
    """Return {(s, j): (o, (w0, w1, w2, w3))} from the table in §8.1."""
    start = spec_text.index("### 8.1")
    end = spec_text.index("### 8.2", start)
    table = {}
    for line in spec_text[start:end].splitlines():
        m = _ROW_RE.match(line.strip())
        if not m:
            continue
        s, j, o, w0, w1, w2, w3 = (int(g) for g in m.groups())
        if (s, j) in table:
            raise AssertionError(f"duplicate row s={s} j={j} in §8.1")
        table[(s, j)] = (o, (w0, w1, w2, w3))
    expected = {(s, j) for s in range(1, 9) for j in range(s)}
    if set(table) != expected:
        raise AssertionError(f"§8.1 table rows: missing {expected - set(table)}, extra {set(table) - expected}")
    for key, (o, w) in table.items():
        if sum(w) != 4096:
            raise AssertionError(f"§8.1 weights for {key} do not sum to 4096")
    return table


def _keys_kernel(d: Fraction) -> Fraction:
    """Keys cubic convolution kernel with a = -1/2."""
    a = Fraction(-1, 2)
    d = abs(d)
    if d <= 1:
        return (a + 2) * d**3 - (a + 3) * d**2 + 1
    if d < 2:
        return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
    return Fraction(0)


def compute_weight_table():
    """The weights from the words of §8.1 (exact rational arithmetic)."""
    table = {}
    for s in range(1, 9):
        for j in range(s):
            # u = (x + 0.5)/s - 0.5 with x = s*k + j  ->  u = k + f
            f = Fraction(2 * j + 1, 2 * s) - Fraction(1, 2)
            o = math.floor(f) - 1  # taps floor(u)-1 .. floor(u)+2
            w = [math.floor(4096 * _keys_kernel(f - (o + t)) + Fraction(1, 2)) for t in range(4)]
            rem = 4096 - sum(w)
            big = max(range(4), key=lambda t: w[t])  # first of the largest
            w[big] += rem
            table[(s, j)] = (o, tuple(w))
    return table


WEIGHTS = parse_weight_table(SPEC_PATH.read_text(encoding="utf-8"))
_FORMULA_WEIGHTS = compute_weight_table()
assert WEIGHTS == _FORMULA_WEIGHTS, "§8.1 table disagrees with the formula"


# ---------------------------------------------------------------------------
# §4 / §6.1 WebP helpers
# ---------------------------------------------------------------------------


def _check_riff(payload: bytes, what: str):
    if len(payload) < 12 or payload[0:4] != b"RIFF" or payload[8:12] != b"WEBP":
        raise SpecError(f"{what}: not a RIFF/WEBP file")
    riff_size = int.from_bytes(payload[4:8], "little")
    # ASSUMPTION: "a complete WebP file" = the RIFF size covers the payload exactly.
    if riff_size + 8 != len(payload):
        raise SpecError(f"{what}: RIFF size {riff_size} does not match payload of {len(payload)} bytes")
    # §4 "one frame, no animation", §10 "no animation flag": the VP8X flags byte, bit 1.
    if payload[12:16] == b"VP8X" and len(payload) > 20 and payload[20] & 0x02:
        raise SpecError(f"{what}: the WebP has the animation flag")


def _open_webp(payload: bytes, what: str, width: int, height: int):
    try:
        im = Image.open(io.BytesIO(payload), formats=["WEBP"])
    except Exception as e:  # noqa: BLE001
        raise SpecError(f"{what}: cannot open WebP: {e}") from None
    # "one frame, no animation"
    if getattr(im, "n_frames", 1) != 1 or getattr(im, "is_animated", False):
        raise SpecError(f"{what}: animated WebP")
    # §10: canvas checked before decoding pixels.
    if im.size != (width, height):
        raise SpecError(f"{what}: WebP canvas {im.size} != {(width, height)}")
    try:
        im.load()
    except Exception as e:  # noqa: BLE001
        raise SpecError(f"{what}: cannot decode WebP: {e}") from None
    return im


def _webp_to_channels(im, channels: int, what: str) -> np.ndarray:
    """Decoded WebP -> uint8 (h, w, 4 or 3) array of R,G,B[,A] per §4/§6.1."""
    if channels == 4:
        if im.mode == "RGBA":
            return np.asarray(im, dtype=np.uint8).copy()
        if im.mode == "RGB":  # §4/§6.1: a WebP without alpha has A = 255
            rgb = np.asarray(im, dtype=np.uint8)
            a = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
            return np.concatenate([rgb, a], axis=2)
        raise SpecError(f"{what}: channels=4 needs a WebP with alpha (got {im.mode})")
    if im.mode != "RGB":
        raise SpecError(f"{what}: channels={channels} needs an RGB WebP without alpha (got {im.mode})")
    return np.asarray(im, dtype=np.uint8).copy()


def _luma(rgb: np.ndarray) -> np.ndarray:
    """§4: L = (19595 R + 38470 G + 7471 B + 32768) >> 16."""
    h, w, _ = rgb.shape
    out = np.zeros((h, w, 1), np.uint8)
    for y in range(h):
        for x in range(w):
            r, g, b = (int(v) for v in rgb[y, x, :3])
            out[y, x, 0] = (19595 * r + 38470 * g + 7471 * b + 32768) >> 16
    return out


# ---------------------------------------------------------------------------
# Chunk decoders
# ---------------------------------------------------------------------------


def _decode_head(body: bytes) -> dict:
    if len(body) != 14:
        raise SpecError(f"HEAD length {len(body)} != 14")
    version = _u8(body, 0)
    channels = _u8(body, 1)
    width = _u32(body, 2)
    height = _u32(body, 6)
    scale = _u8(body, 10)
    feather = _u8(body, 11)
    reserved = _u16(body, 12)
    if version != 1:
        raise SpecError(f"unknown version {version}")
    if channels not in (1, 3, 4):
        raise SpecError(f"bad channels {channels}")
    if not 1 <= width <= 65535:
        raise SpecError(f"width {width} out of range")
    if not 1 <= height <= 65535:
        raise SpecError(f"height {height} out of range")
    if not 1 <= scale <= 8:
        raise SpecError(f"scale {scale} out of range")
    if not 0 <= feather <= 32:
        raise SpecError(f"feather {feather} out of range")
    if reserved != 0:
        raise SpecError("reserved field not zero")
    bw = -(-width // scale)
    bh = -(-height // scale)
    # ASSUMPTION: the "should bound the total pixel count" advice (§3) is not applied.
    return dict(channels=channels, width=width, height=height, scale=scale, feather=feather, bw=bw, bh=bh)


def _decode_bgnd(body: bytes, hd: dict) -> np.ndarray:
    if len(body) < 9:
        raise SpecError("BGND too short")
    coding = _u8(body, 0)
    if coding != 1:
        raise SpecError(f"unknown BGND coding {coding}")
    if _u32(body, 1) != hd["bw"] or _u32(body, 5) != hd["bh"]:
        raise SpecError("BGND size does not match ceil(W/s) x ceil(H/s)")
    payload = body[9:]
    _check_riff(payload, "BGND")
    im = _open_webp(payload, "BGND", hd["bw"], hd["bh"])
    rgb = _webp_to_channels(im, hd["channels"], "BGND")
    if hd["channels"] == 1:
        return _luma(rgb)
    return rgb


def _decode_mask(body: bytes, hd: dict) -> np.ndarray:
    if len(body) < 1:
        raise SpecError("MASK too short")
    coding = _u8(body, 0)
    if coding == 2:
        return _decode_mask_coding2(body, hd)
    if coding != 1:
        raise SpecError(f"unknown MASK coding {coding}")
    W, H = hd["width"], hd["height"]
    runs = brotli_capped(body[1:], H * (W + 1))
    mask = np.zeros((H, W), np.uint8)
    pos = 0
    for y in range(H):
        x = 0
        first = True
        subject = False  # rows start with a background run
        while x < W:
            if pos >= len(runs):
                raise SpecError(f"runs stream ends in/before row {y}")
            run, pos = read_varint(runs, pos)
            if run == 0 and not first:
                raise SpecError(f"zero run that is not the first of row {y}")
            if x + run > W:
                raise SpecError(f"run passes the end of row {y}")
            if subject:
                mask[y, x : x + run] = 1
            x += run
            subject = not subject
            first = False
    if pos != len(runs):
        raise SpecError("trailing bytes after the last mask row")
    return mask


# §5.2: the template (dx_t, dy_t), t = 0 … 15; bit 15 − t of the context.
MASK_TEMPLATE = [(-1, -2), (0, -2), (1, -2), (2, -2), (-2, -2),
                 (-2, -1), (-1, -1), (0, -1), (1, -1), (2, -1), (3, -1), (-3, -1),
                 (-4, 0), (-3, 0), (-2, 0), (-1, 0)]
MASK_COUNT_CAP = 12  # §5.2: n = min(n + 1, 12)


def _decode_mask_coding2(body: bytes, hd: dict) -> np.ndarray:
    """§5.2 (MASK coding 2)."""
    if len(body) < 9:
        raise SpecError("MASK coding 2 payload shorter than 9 bytes")
    x0, y0, w, h = (_u16(body, off) for off in (1, 3, 5, 7))
    stream = body[9:]
    W, H = hd["width"], hd["height"]
    mask = np.zeros((H, W), np.uint8)
    if w == 0 or h == 0:
        if (x0, y0, w, h) != (0, 0, 0, 0) or stream:
            raise SpecError("MASK coding 2: an empty mask needs x0 = y0 = width = height = 0 and no stream")
        return mask
    if x0 + w > W or y0 + h > H:
        raise SpecError("MASK coding 2: the rectangle passes the image")
    rd = Coder2RangeDecoder(stream)
    probs, counts = {}, {}  # context c: (p, n), (32768, 0) until first used

    def decision(ctx: int) -> int:
        p, n = probs.get(ctx, 32768), counts.get(ctx, 0)
        b = rd.decode(p)
        rate = 65536 // (n + 3)  # §6.4.5.2, with the count capped at 12
        p = p + (((65536 - p) * rate) >> 16) if b == 1 else p - ((p * rate) >> 16)
        probs[ctx] = min(max(p, 64), 65472)
        counts[ctx] = min(n + 1, MASK_COUNT_CAP)
        return b

    # Rows of m with 4 zero columns either side and two zero rows above: m(i, j) = 0 outside.
    pad = 4
    m = [[0] * (w + 2 * pad) for _ in range(h + 2)]
    taps = [(dy, dx, 15 - t) for t, (dx, dy) in enumerate(MASK_TEMPLATE)]
    for j in range(h):
        row = m[j + 2]
        if decision(65536):
            m[j + 2] = list(m[j + 1])
            continue
        for i in range(w):
            c = 0
            for dy, dx, shift in taps:
                c |= m[j + 2 + dy][i + pad + dx] << shift
            row[i + pad] = decision(c)
    rd.finish()
    mask[y0 : y0 + h, x0 : x0 + w] = np.array([r[pad : pad + w] for r in m[2:]], np.uint8)
    if _mask_box(mask)[0] != (x0, y0, w, h):
        raise SpecError("MASK coding 2: the rectangle is not the box of the decoded mask")
    return mask


def _mask_box(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0, 0, 0, 0), 0
    x0, y0 = int(xs.min()), int(ys.min())
    return (x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1), len(xs)


def _med(a, b, c):
    if c >= max(a, b):
        return min(a, b)
    if c <= min(a, b):
        return max(a, b)
    return a + b - c


def _unzigzag(z):
    return z >> 1 if z % 2 == 0 else -((z + 1) >> 1)


def _decode_subj(body: bytes, hd: dict, mask: np.ndarray) -> np.ndarray:
    """Returns S as uint8 (H, W, C); only entries with M = 1 are meaningful."""
    if len(body) < 17:
        raise SpecError("SUBJ too short")
    coding = _u8(body, 0)
    box = (_u32(body, 1), _u32(body, 5), _u32(body, 9), _u32(body, 13))
    payload = body[17:]
    c = hd["channels"]
    W, H = hd["width"], hd["height"]
    mbox, n = _mask_box(mask)
    if coding not in (0, 1, 2, 3, 4, 5):
        raise SpecError(f"unknown SUBJ coding {coding}")
    if box != mbox:
        raise SpecError(f"SUBJ box {box} != mask box {mbox}")
    S = np.zeros((H, W, c), np.uint8)
    if coding == 0:
        if n != 0:
            raise SpecError("SUBJ coding 0 with subject pixels")
        if payload:
            raise SpecError("SUBJ coding 0 with a non-empty payload")
        return S
    if n == 0:
        raise SpecError(f"SUBJ coding {coding} with an empty mask")
    x0, y0, bws, bhs = box

    if coding == 1:
        _check_riff(payload, "SUBJ")
        if payload[12:16] != b"VP8L":
            raise SpecError("SUBJ coding 1 is not a simple lossless WebP (VP8L)")
        # "the RIFF header, then one VP8L chunk": the VP8L chunk fills the file.
        size = int.from_bytes(payload[16:20], "little") if len(payload) >= 20 else -1
        if size < 0 or 20 + size + (size & 1) != len(payload):
            raise SpecError("SUBJ coding 1: not exactly one VP8L chunk")
        im = _open_webp(payload, "SUBJ", bws, bhs)
        arr = _webp_to_channels(im, c, "SUBJ")
        for j in range(bhs):
            for i in range(bws):
                if c == 1:
                    # ASSUMPTION: R = G = B is not verified; the value is R.
                    S[y0 + j, x0 + i, 0] = arr[j, i, 0]
                else:
                    S[y0 + j, x0 + i, :] = arr[j, i, :c]
        return S

    if coding == 4:
        return _decode_coding4(payload, hd, mask)

    if coding == 5:
        # §6.5: u8 N (1 … 31), then a §6.3 stream read with step = 2N + 1.
        if not payload:
            raise SpecError("SUBJ coding 5: empty payload (no N)")
        max_error = payload[0]
        if not 1 <= max_error <= 31:
            raise SpecError(f"SUBJ coding 5: N = {max_error} outside 1 … 31")
        # ASSUMPTION: §6.3's "payload" (the range decoder's "next byte", "every payload byte
        # must have been read") means the stream after N here; N itself is not range-coded.
        # ASSUMPTION: a residual of more than 170 steps (which no encoder writes, §6.5
        # "Encoder view") is not rejected: the text gives e the range −255 … 255 and the
        # clamps keep every value in 0 … 255 "for any stream".
        planes = _decode_coding3(payload[1:], c, mask[y0 : y0 + bhs, x0 : x0 + bws], max_error=max_error)
        for j in range(bhs):
            for i in range(bws):
                v = [planes[p][j][i] for p in range(c)]
                if c == 1:
                    vals = v
                else:
                    # §6.5 "Subject values": R = V0 + V1, G = V0, B = V0 + V2, A = V3.
                    vals = [v[0] + v[1], v[0], v[0] + v[2]] + v[3:]
                # "Every one is in 0 … 255 by construction": asserted, not a rejection.
                assert all(0 <= x <= 255 for x in vals), vals
                S[y0 + j, x0 + i, :] = vals
        return S

    if coding == 3:
        planes = _decode_coding3(payload, c, mask[y0 : y0 + bhs, x0 : x0 + bws])
        for j in range(bhs):
            for i in range(bws):
                if c == 1:
                    S[y0 + j, x0 + i, 0] = planes[0][j][i]
                    continue
                g = planes[0][j][i]
                S[y0 + j, x0 + i, 0] = (planes[1][j][i] + g - 128) % 256
                S[y0 + j, x0 + i, 1] = g
                S[y0 + j, x0 + i, 2] = (planes[2][j][i] + g - 128) % 256
                if c == 4:
                    S[y0 + j, x0 + i, 3] = planes[3][j][i]
        return S

    # coding 2
    r = brotli_capped(payload, c * n)
    if len(r) != c * n:
        raise SpecError(f"SUBJ residuals: {len(r)} bytes, expected {c * n}")
    pos = 0
    planes = []
    for _p in range(c):
        plane = [[0] * bws for _ in range(bhs)]
        for j in range(bhs):
            for i in range(bws):
                if i == 0 and j == 0:
                    pred = 0
                elif j == 0:
                    pred = plane[j][i - 1]
                elif i == 0:
                    pred = plane[j - 1][i]
                else:
                    pred = _med(plane[j][i - 1], plane[j - 1][i], plane[j - 1][i - 1])
                if mask[y0 + j, x0 + i]:
                    z = r[pos]
                    pos += 1
                    plane[j][i] = (pred + _unzigzag(z)) % 256
                else:
                    plane[j][i] = pred
        planes.append(plane)
    assert pos == len(r)
    for j in range(bhs):
        for i in range(bws):
            if c == 1:
                S[y0 + j, x0 + i, 0] = planes[0][j][i]
                continue
            g = planes[0][j][i]
            red = (planes[1][j][i] + g) % 256
            blue = (planes[2][j][i] + g) % 256
            S[y0 + j, x0 + i, 0] = red
            S[y0 + j, x0 + i, 1] = g
            S[y0 + j, x0 + i, 2] = blue
            if c == 4:
                S[y0 + j, x0 + i, 3] = planes[3][j][i]
    return S


# ---------------------------------------------------------------------------
# §6.3 Coding 3: context-modelled range coding
# ---------------------------------------------------------------------------

C3_THRESHOLDS = (3, 7, 13, 22, 36, 60, 100, 170)  # §6.3 "q"
C3_NCTX = 108  # c = 0 … 107
C3_NBITS = 15  # k = 0 … 14
C3_NSIGN = 81  # s = 0 … 80
C3_PROB_INIT = 2048
C3_COUNT_MAX = 60


def _sgn3(x: int) -> int:
    return 0 if x == 0 else (1 if x > 0 else 2)


class RangeDecoder:
    """§6.3 "Range decoder", step by step.

    A probability is a 2-item list [P, n] (P in 1/4096 units of "bit is 0", n = updates).
    """

    def __init__(self, data: bytes, what: str = "SUBJ coding 3"):
        self.data = data
        self.what = what
        self.pos = 0
        self.range = 0xFFFFFFFF
        self.code = 0
        for _ in range(4):
            self.code = self.code * 256 + self._next_byte()

    def _next_byte(self) -> int:
        if self.pos >= len(self.data):
            raise SpecError(f"{self.what}: payload ends before the last residual")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def _normalise(self):
        while self.range < (1 << 24):
            self.range = self.range * 256
            self.code = (self.code * 256 + self._next_byte()) % (1 << 32)

    def bit(self, prob) -> int:
        P, n = prob
        sh = min(6, (n + 4).bit_length() - 1)  # floor(log2(n + 4)), n before the update
        bound = (self.range >> 12) * P
        if self.code < bound:
            b = 0
            self.range = bound
            P = P + ((4096 - P) >> sh)
        else:
            b = 1
            self.code = self.code - bound
            self.range = self.range - bound
            P = P - (P >> sh)
        prob[0] = P
        prob[1] = min(n + 1, C3_COUNT_MAX)
        self._normalise()
        return b

    def direct(self) -> int:
        self.range = self.range >> 1
        if self.code < self.range:
            b = 0
        else:
            b = 1
            self.code = self.code - self.range
        self._normalise()
        return b

    def finish(self):
        if self.pos != len(self.data):
            raise SpecError(f"{self.what}: {len(self.data) - self.pos} payload bytes left over")


def _c3_residual(rd: RangeDecoder, Z, Sp) -> int:
    """§6.3 "Residual": Z = Z[p][c] (15 probabilities), Sp = S[p][s]."""
    if rd.bit(Z[0]) == 0:
        return 0
    neg = rd.bit(Sp)
    x = 0
    while x < 7 and rd.bit(Z[1 + x]) == 1:
        x += 1
    if x == 0:
        m = 1
    else:
        m = 2 + rd.bit(Z[7 + x])
        for _ in range(x - 1):
            m = 2 * m + rd.direct()
    return -m if neg == 1 else m


def _clamp255(x: int) -> int:
    return min(max(x, 0), 255)  # §6.5 clamp(x)


def _decode_coding3(payload: bytes, channels: int, boxmask: np.ndarray, max_error: int = 0):
    """Returns the planes P0 … P(c−1) as lists of rows over the box.

    max_error = 0: coding 3 (§6.3), the whole payload is the stream, values mod 256.
    max_error = N >= 1: coding 5 (§6.5), `payload` is the stream after the u8 N; residuals
    count steps of 2N + 1, values are clamped and the colour planes are differences with
    the reconstructed G of the pixel (so P1 and P2 may be negative).
    """
    bhs, bws = boxmask.shape
    near = max_error > 0
    step = 2 * max_error + 1  # 1 for coding 3 (unused there)
    rd = RangeDecoder(payload, "SUBJ coding 5" if near else "SUBJ coding 3")
    # "All are set up once, before the first residual."
    Zs = [[[[C3_PROB_INIT, 0] for _k in range(C3_NBITS)] for _c in range(C3_NCTX)] for _p in range(channels)]
    Ss = [[[C3_PROB_INIT, 0] for _s in range(C3_NSIGN)] for _p in range(channels)]
    V = [[[0] * bws for _ in range(bhs)] for _p in range(channels)]
    E = [[[0] * bws for _ in range(bhs)] for _p in range(channels)]

    def e_at(Ep, i, j):  # E is 0 outside the box (and at background pixels, as stored)
        if 0 <= i < bws and 0 <= j < bhs:
            return Ep[j][i]
        return 0

    for j in range(bhs):
        for i in range(bws):
            subject = bool(boxmask[j, i])
            for p in range(channels):
                Vp, Ep = V[p], E[p]
                colour = channels in (3, 4) and p in (1, 2)  # §6.3 "the colour planes"
                if j == 0:
                    Wv = Vp[0][i - 1] if i > 0 else 0
                    Nv = NWv = NEv = Wv
                else:
                    Nv = Vp[j - 1][i]
                    Wv = Vp[j][i - 1] if i > 0 else Nv
                    NWv = Vp[j - 1][i - 1] if i > 0 else Nv
                    NEv = Vp[j - 1][i + 1] if i < bws - 1 else Nv
                pred = _med(Wv, Nv, NWv)
                if subject:
                    eW = e_at(Ep, i - 1, j)
                    eN = e_at(Ep, i, j - 1)
                    eNW = e_at(Ep, i - 1, j - 1)
                    eNE = e_at(Ep, i + 1, j - 1)
                    grad = abs(Wv - NWv) + abs(Nv - NWv) + abs(Nv - NEv)
                    if near:
                        # §6.5 "Context": the gradient part divided by the step, rounding down
                        # (grad >= 0, so // is floor).
                        grad //= step
                    act = grad + abs(eW) + abs(eN) + abs(eNW) + abs(eNE)
                    q = sum(1 for th in C3_THRESHOLDS if th <= act)
                    t = (int(Wv == NWv) + 2 * int(Nv == NWv)) if colour else 0
                    # P1 is decoded before P2 at this pixel, so E[1][j][i] is its residual.
                    u = _sgn3(E[1][j][i]) if (channels in (3, 4) and p == 2) else 0
                    c = q + 9 * (t + 4 * u)
                    s = 3 * _sgn3(eW) + _sgn3(eN) + 9 * _sgn3(eNE + eNW) + 27 * u
                    e = _c3_residual(rd, Zs[p][c], Ss[p][s])
                else:
                    e = 0  # background pixel of the box: nothing is decoded
                Ep[j][i] = e
                if not near:
                    # §6.3: (pred + e) mod 256; at a background pixel, pred itself.
                    Vp[j][i] = (pred + e) % 256
                elif colour:
                    # §6.5 "Reconstruction", P1 and P2: clamp(G' + r) − G', G' = V of P0 here.
                    # ASSUMPTION: "P1, P2" means the colour planes of a 3- or 4-channel image
                    # (a 1-channel image has only P0; P3 is A).
                    g = V[0][j][i]
                    Vp[j][i] = _clamp255(g + pred + e * step) - g
                else:
                    # §6.5 "Reconstruction", P0 and P3: clamp(pred + e·step).
                    Vp[j][i] = _clamp255(pred + e * step)
    rd.finish()
    return V


# ---------------------------------------------------------------------------
# §6.4 Coding 4: JPEG coefficients
# ---------------------------------------------------------------------------
#
# The tables the text lists are parsed from spec/FORMAT.md itself (so that a typo in the
# spec shows up as a failing self-check) and cross-checked against independent
# derivations where one exists.  T.81 Tables K.1 / K.2, which §6.4.1 only references,
# are copied from ITU-T T.81 Annex K (natural, row-major order).


def _spec_between(spec_text: str, start: str, end: str) -> str:
    i = spec_text.index(start)
    return spec_text[i : spec_text.index(end, i)]


def parse_zigzag(spec_text: str) -> list[int]:
    """`ZIGZAG` of §6.4.1."""
    sec = _spec_between(spec_text, "#### 6.4.1", "#### 6.4.2")
    m = re.search(r"ZIGZAG\s*=\s*\[([^\]]*)\]", sec)
    values = [int(v) for v in re.findall(r"-?\d+", m.group(1))]
    if sorted(values) != list(range(64)):
        raise AssertionError("§6.4.1 ZIGZAG is not a permutation of 0…63")
    return values


def compute_zigzag() -> list[int]:
    """T.81 Figure A.6 by walking the anti-diagonals (independent of the spec's list)."""
    order = []
    for s in range(15):  # s = row + column
        cells = [(r, s - r) for r in range(8) if 0 <= s - r < 8]
        if s % 2 == 0:  # even diagonals run bottom-left -> top-right (row decreasing)
            cells.reverse()
        order += [8 * r + c for r, c in cells]
    return order


def parse_squash_table(spec_text: str) -> list[int]:
    """`K` of §6.4.5.3."""
    sec = _spec_between(spec_text, "##### 6.4.5.3", "##### 6.4.5.4")
    m = re.search(r"\bK\s*=\s*\[([^\]]*)\]", sec)
    values = [int(v) for v in re.findall(r"-?\d+", m.group(1))]
    if len(values) != 33:
        raise AssertionError(f"§6.4.5.3 K has {len(values)} entries, 33 needed (i = 0 … 32)")
    return values


def parse_interior(spec_text: str) -> list[int]:
    """`INTERIOR` of §6.4.5.5."""
    sec = _spec_between(spec_text, "##### 6.4.5.5", "#### 6.4.6 ")
    m = re.search(r"`INTERIOR`[^`]*`([\d\s]+)`", sec)
    return [int(v) for v in m.group(1).split()]


def parse_range_map(spec_text: str, name: str) -> list[int]:
    """`NZB` / `NRB` of §6.4.5.5: "0→1, 1→2, …, 5–6→6, …" as a list over 0 … 63."""
    sec = _spec_between(spec_text, "##### 6.4.5.5", "#### 6.4.6 ")
    start = sec.index(f"`{name}(x)`")
    end = sec.index("\n- ", start)
    table = [None] * 64
    for lo, hi, val in re.findall(r"(\d+)(?:\s*[–-]\s*(\d+))?\s*→\s*(\d+)", sec[start:end]):
        for x in range(int(lo), int(hi or lo) + 1):
            if table[x] is not None:
                raise AssertionError(f"§6.4.5.5 {name}({x}) given twice")
            table[x] = int(val)
    if None in table:
        raise AssertionError(f"§6.4.5.5 {name} does not cover 0 … 63")
    return table


def _product(expr: str) -> int:
    out = 1
    for f in expr.split("·"):
        out *= int(f)
    return out


def parse_regions(spec_text: str):
    """Context region sizes and weight-set counts of §6.4.5.4, in the table's order."""
    sec = _spec_between(spec_text, "##### 6.4.5.4", "##### 6.4.5.5")
    regions = {}
    table_part = sec[: sec.index("Weight sets:")]
    rows = [ln.strip() for ln in table_part.splitlines() if ln.strip().startswith("|")]
    # The table is 3 column-pairs wide; "laid out in this order" is column by column.
    columns = [[], [], []]
    for ln in rows:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if cells[0] == "region" or re.fullmatch(r"[-|: ]+", ln):
            continue  # the header and the separator row
        for col in range(3):
            name, size = cells[2 * col], cells[2 * col + 1]
            if name:
                columns[col].append((name, _product(size)))
    for col in columns:
        for name, size in col:
            if name in regions:
                raise AssertionError(f"§6.4.5.4 region {name} listed twice")
            regions[name] = size
    wline = sec[sec.index("Weight sets:") :].split("\n\n")[0]
    weights = {name: _product(size) for name, size in re.findall(r"([A-Z0-9]+) \(([\d·]+)\)", wline)}
    return regions, weights


def parse_idct_constants(spec_text: str) -> dict[str, int]:
    sec = _spec_between(spec_text, "##### 6.4.6.1", "##### 6.4.6.2")
    return {name: int(v) for name, v in re.findall(r"\b(F\d{4})\s*=\s*(\d+)", sec)}


_SPEC_TEXT = SPEC_PATH.read_text(encoding="utf-8")
ZIGZAG = parse_zigzag(_SPEC_TEXT)
assert ZIGZAG == compute_zigzag(), "§6.4.1 ZIGZAG is not T.81 Figure A.6"
SQUASH_K = parse_squash_table(_SPEC_TEXT)
INTERIOR = parse_interior(_SPEC_TEXT)
assert INTERIOR == [z for z in ZIGZAG if z >= 8 and z % 8 >= 1], "§6.4.5.5 INTERIOR"
BAND = [min(ZIGZAG.index(z) // 5, 9) for z in INTERIOR]  # §6.4.5.5
NZB = parse_range_map(_SPEC_TEXT, "NZB")
NRB = parse_range_map(_SPEC_TEXT, "NRB")
C2_REGIONS, C2_WEIGHT_SETS = parse_regions(_SPEC_TEXT)
IDCT = parse_idct_constants(_SPEC_TEXT)
# §6.4.6.1: FIX(x) = round(x · 2^13); the names give x to 3 decimals, the exact values
# are IJG's (0.298631336, 0.390180644, 0.541196100, ...).
_IDCT_EXACT = {
    "F0298": 0.298631336, "F0390": 0.390180644, "F0541": 0.541196100, "F0765": 0.765366865,
    "F0899": 0.899976223, "F1175": 1.175875602, "F1501": 1.501321110, "F1847": 1.847759065,
    "F1961": 1.961570560, "F2053": 2.053119869, "F2562": 2.562915447, "F3072": 3.072711026,
}  # fmt: skip
assert IDCT == {k: round(v * 8192) for k, v in _IDCT_EXACT.items()}, "§6.4.6.1 FIX constants"

# ITU-T T.81 Annex K, Table K.1 (luminance) and K.2 (chrominance), natural order.
T81_K1 = [
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
]  # fmt: skip
T81_K2 = [
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
] + [99] * 32  # fmt: skip


def ijg_table(kind: int, q: int) -> list[int]:
    """§6.4.1 kinds 2 and 3: libjpeg's jpeg_quality_scaling with force_baseline."""
    base = T81_K1 if kind == 2 else T81_K2
    s = 5000 // q if q < 50 else 200 - 2 * q
    return [min(max((b * s + 50) // 100, 1), 255) for b in base]


class C4Component:
    """One JPEG component of a coding-4 payload (§6.4.1, §6.4.2)."""

    def __init__(self, h, v, t):
        self.h, self.v, self.t = h, v, t
        self.Q = None  # natural order
        self.dw = self.dh = self.nbx = self.nby = self.rh = self.rv = 0
        self.stored = []  # (bx, by) in raster order (§6.4.3)
        self.coef = {}  # (bx, by) -> list of 64 ints, natural order
        self.samples = {}  # (bx, by) -> 8x8 list of rows of samples (§6.4.6.1)


def _parse_coding4_header(payload: bytes, W: int, H: int):
    """§6.4.1. Returns (coder, transform, components, data)."""
    pos = 0

    def need(k):
        if pos + k > len(payload):
            raise SpecError("SUBJ coding 4: payload shorter than its fields")

    need(7)
    coder = payload[0]
    width = _u16(payload, 1)
    height = _u16(payload, 3)
    transform = payload[5]
    n = payload[6]
    pos = 7
    if coder not in (1, 2, 3):
        raise SpecError(f"SUBJ coding 4: unknown coder {coder}")
    if (width, height) != (W, H):
        raise SpecError(f"SUBJ coding 4: size {width}x{height} != the mask's {W}x{H}")
    if n not in (1, 3):
        raise SpecError(f"SUBJ coding 4: n = {n} components")
    if transform > 1:
        raise SpecError(f"SUBJ coding 4: transform {transform}")
    if transform == 1 and n != 3:
        raise SpecError("SUBJ coding 4: transform 1 needs 3 components")
    need(2 * n)
    comps = []
    for _i in range(n):
        hv, t = payload[pos], payload[pos + 1]
        pos += 2
        comps.append(C4Component(hv >> 4, hv & 15, t))
    for c in comps:
        if not (1 <= c.h <= 4 and 1 <= c.v <= 4):
            raise SpecError(f"SUBJ coding 4: sampling factor {c.h}x{c.v} outside 1…4")
    hmax = max(c.h for c in comps)
    vmax = max(c.v for c in comps)
    for c in comps:
        if hmax % c.h or vmax % c.v:
            raise SpecError("SUBJ coding 4: non-integer sampling ratio")
    if n == 1 and (comps[0].h, comps[0].v) != (1, 1):
        raise SpecError("SUBJ coding 4: one component with h or v != 1")
    need(1)
    m = payload[pos]
    pos += 1
    if m == 0 or m > n:
        raise SpecError(f"SUBJ coding 4: m = {m} tables for n = {n}")
    # ASSUMPTION: a table index >= m is checked after the tables are read (the order of
    # the checks does not change which payloads are rejected).
    tables = []
    for _k in range(m):
        need(1)
        kind = payload[pos]
        pos += 1
        # ASSUMPTION: a table entry 0 is valid (kinds 0 / 1 say 0…255 / 0…65535; §6.4.5.5
        # uses max(Q[z], 1)); it dequantises to 0.
        if kind == 0:
            need(64)
            zz = list(payload[pos : pos + 64])
            pos += 64
        elif kind == 1:
            need(128)
            zz = [_u16(payload, pos + 2 * k) for k in range(64)]
            pos += 128
        elif kind in (2, 3):
            need(1)
            q = payload[pos]
            pos += 1
            if not 1 <= q <= 100:
                raise SpecError(f"SUBJ coding 4: quality {q} outside 1…100")
            tables.append(ijg_table(kind, q))
            continue
        else:
            raise SpecError(f"SUBJ coding 4: unknown table kind {kind}")
        natural = [0] * 64
        for k in range(64):
            natural[ZIGZAG[k]] = zz[k]
        tables.append(natural)
    for c in comps:
        if c.t >= m:
            raise SpecError(f"SUBJ coding 4: table index {c.t} >= m = {m}")
        c.Q = tables[c.t]
    # §6.4.2 geometry
    for c in comps:
        c.dw = -(-W * c.h // hmax)
        c.dh = -(-H * c.v // vmax)
        c.nbx = -(-c.dw // 8)
        c.nby = -(-c.dh // 8)
        c.rh = hmax // c.h
        c.rv = vmax // c.v
    return coder, transform, comps, payload[pos:]


def _axis_reads(r: int, d: int, size: int) -> list[list[int]]:
    """§6.4.3: for each pixel coordinate 0 … size−1, the samples 0 … d−1 it reads."""
    reads = [[] for _ in range(size)]
    for s in range(d):
        if r == 1:
            lo, hi = s, s
        elif r == 2:
            lo, hi = 2 * s - 1, 2 * s + 2
        else:
            lo, hi = r * s, r * s + r - 1
        for x in range(max(lo, 0), min(hi, size - 1) + 1):
            reads[x].append(s)
    return reads


def _select_blocks(c: C4Component, mask: np.ndarray):
    """§6.4.3 block selection: the stored blocks of component c, in raster order."""
    H, W = mask.shape
    hreads = _axis_reads(c.rh, c.dw, W)
    vreads = _axis_reads(c.rv, c.dh, H)
    needed = np.zeros((c.dh, c.dw), bool)
    for y, x in zip(*np.nonzero(mask)):
        for sy in vreads[y]:
            for sx in hreads[x]:
                needed[sy, sx] = True
    stored = []
    for by in range(c.nby):
        for bx in range(c.nbx):
            if needed[8 * by : 8 * by + 8, 8 * bx : 8 * bx + 8].any():
                stored.append((bx, by))
    return stored


def _wrap16(x: int) -> int:
    return ((x + 32768) % 65536) - 32768


def _decode_coder1(data: bytes, comps: list[C4Component]):
    """§6.4.4."""
    N = sum(len(c.stored) for c in comps)
    S = brotli_capped(data, 3 * 64 * N)
    if len(S) < 64 * N:
        raise SpecError(f"SUBJ coding 4 coder 1: {len(S)} bytes, fewer than 64N = {64 * N}")
    E = S[: 64 * N].count(255)
    if len(S) != 64 * N + 2 * E:
        raise SpecError(f"SUBJ coding 4 coder 1: {len(S)} bytes, expected 64N + 2E = {64 * N + 2 * E}")
    # ASSUMPTION: "then, for every z >= 255 in the same order" puts the u16 escapes of all
    # components after the 64N bytes of all components (not after each component); the
    # length rule 64N + 2E says as much.  "(k = 0…63, j = 0…N_i − 1)" is read k-major:
    # coefficient k of every block, then coefficient k + 1.  u16 is big-endian (§1).
    esc = 64 * N  # position of the next u16 escape
    pos = 0
    for c in comps:
        Ni = len(c.stored)
        blocks = [[0] * 64 for _ in range(Ni)]
        for k in range(64):
            for j in range(Ni):
                z = S[pos]
                pos += 1
                if z == 255:
                    z = 255 + _u16(S, esc)
                    esc += 2
                V = z >> 1 if z % 2 == 0 else -((z + 1) >> 1)
                if not -32768 <= V <= 32767:
                    raise SpecError(f"SUBJ coding 4 coder 1: value {V} outside 16 bits")
                blocks[j][ZIGZAG[k]] = V  # k = 0: V[0][j], the DC difference for now
        for j in range(1, Ni):  # restore the DC values (cumulative sums mod 65536)
            blocks[j][0] = _wrap16(blocks[j - 1][0] + blocks[j][0])
        c.coef = dict(zip(c.stored, blocks))
    assert pos == 64 * N and esc == len(S)


# ----- §6.4.5 Coder 2 --------------------------------------------------------


def squash(d: int) -> int:
    """§6.4.5.3."""
    d = min(max(d, -2047), 2047)
    w = d & 127
    i = (d >> 7) + 16
    return (SQUASH_K[i] * (128 - w) + SQUASH_K[i + 1] * w + 64) >> 7


def _make_stretch():
    """stretch(p), 0 ≤ p ≤ 4095: the smallest d in −2047…2047 with squash(d) ≥ p, else 2047."""
    table = [2047] * 4096
    p_next = 0  # every p < p_next has been assigned
    for d in range(-2047, 2048):
        s = squash(d)
        while p_next <= min(s, 4095):
            table[p_next] = d
            p_next += 1
    return table


STRETCH = _make_stretch()


def stretch(p: int) -> int:
    return STRETCH[p]


class Coder2RangeDecoder:
    """§6.4.5.1. P is the probability of a 1, in units of 1/65536."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.range = 0xFFFFFFFF
        self.code = 0
        for _ in range(4):
            self.code = (self.code << 8) | self._next_byte()

    def _next_byte(self) -> int:
        if self.pos >= len(self.data):
            raise SpecError("SUBJ coding 4 coder 2: data ends before the last decision")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def decode(self, P: int) -> int:
        # ASSUMPTION: code >= range (impossible from the LZMA encoder) is not checked;
        # §6.4.5.1 lists only the two end-of-stream rejections.
        bound = (self.range >> 16) * P
        if self.code < bound:
            self.range = bound
            bit = 1
        else:
            self.code -= bound
            self.range -= bound
            bit = 0
        while self.range < (1 << 24):
            self.range = self.range << 8
            self.code = ((self.code << 8) | self._next_byte()) % (1 << 32)
        return bit

    def finish(self):
        if self.pos != len(self.data):
            left = len(self.data) - self.pos
            raise SpecError(f"SUBJ coding 4 coder 2: {left} bytes left after the last decision")


C2_WEIGHT_INIT = (29491, 29491, 29491, 0, 16384)


class Coder2Model:
    """§6.4.5.2 – §6.4.5.4: contexts, weight sets, mixed decisions, trees, exponents."""

    def __init__(self, rd: Coder2RangeDecoder):
        self.rd = rd
        # A context is a list [p, n]; "all state starts fresh for each payload".
        self.ctx = {name: [[32768, 0] for _ in range(size)] for name, size in C2_REGIONS.items()}
        self.wsets = {name: [list(C2_WEIGHT_INIT) for _ in range(size)] for name, size in C2_WEIGHT_SETS.items()}

    def context(self, region: str, index: int):
        size = len(self.ctx[region])
        # An index outside the region would be a contradiction in the spec's formulas.
        assert 0 <= index < size, f"§6.4.5.4: context {region}[{index}] outside its size {size}"
        return self.ctx[region][index]

    def weights(self, name: str, index: int):
        size = len(self.wsets[name])
        assert 0 <= index < size, f"§6.4.5.4: weight set {name}[{index}] outside its size {size}"
        return self.wsets[name][index]

    @staticmethod
    def update(c, b: int):
        """§6.4.5.2."""
        p, n = c
        rate = 65536 // (n + 3)
        if b == 1:
            p = p + (((65536 - p) * rate) >> 16)
        else:
            p = p - ((p * rate) >> 16)
        c[0] = min(max(p, 64), 65472)
        c[1] = min(n + 1, 120)

    def bit_ctx(self, c) -> int:
        """A bit coded with a context alone: P = p."""
        b = self.rd.decode(c[0])
        self.update(c, b)
        return b

    def bit_half(self) -> int:
        """'P = 1/2': P = 32768, no context."""
        return self.rd.decode(32768)

    def mixed(self, c1, c2, c3, w, s4: int = 0) -> int:
        """§6.4.5.3 mixed decision."""
        s1 = stretch(c1[0] >> 4)
        s2 = stretch(c2[0] >> 4)
        s3 = stretch(c3[0] >> 4)
        dot = (w[0] * s1 + w[1] * s2 + w[2] * s3 + w[3] * 256 + w[4] * s4) >> 16
        dot = min(max(dot, -2047), 2047)
        pm = squash(dot)
        P = min(max(16 * pm, 64), 65472)
        b = self.rd.decode(P)
        err = ((b << 12) - pm) * 10
        w[0] += (s1 * err) >> 13
        w[1] += (s2 * err) >> 13
        w[2] += (s3 * err) >> 13
        w[3] += (256 * err) >> 13
        w[4] += (s4 * err) >> 13
        # ASSUMPTION: the weights are not clamped (the text gives no bound).
        for c in (c1, c2, c3):
            self.update(c, b)
        return b

    def tree(self, nb: int, B1, B2, B3, W) -> int:
        """B1, B2, B3: (region, base); W: (weight-set name, base)."""
        node = 1
        for d in range(nb):
            b = self.mixed(
                self.context(B1[0], B1[1] + node),
                self.context(B2[0], B2[1] + node),
                self.context(B3[0], B3[1] + node),
                self.weights(W[0], W[1] + d),
            )
            node = 2 * node + b
        return node - (1 << nb)

    def exponent(self, E1, E2, E3, W, f: int, g=None) -> int:
        j = f
        while j < 17:
            s4 = 0 if g is None else min(max((g - j) * 384, -2047), 2047)
            b = self.mixed(
                self.context(E1[0], E1[1] + j - f),
                self.context(E2[0], E2[1] + j - f),
                self.context(E3[0], E3[1] + j - f),
                self.weights(W[0], W[1] + j - f),
                s4,
            )
            # ASSUMPTION: a decision "X" codes 1 when X holds (stated nowhere in general).
            if b == 0:  # the decision "e > j" is false
                break
            j += 1
        return j

    def mantissa(self, e: int, M) -> int:
        """The magnitude a, 2^(e−1) ≤ a < 2^e, for e ≥ 1; M = (region, base)."""
        a = 1
        for q in range(e - 2, -1, -1):
            if q >= e - 3:
                b = self.bit_ctx(self.context(M[0], M[1] + 2 * e + (e - 2 - q)))
            else:
                b = self.bit_half()
            a = 2 * a + b
        return a


def _bitlen(x: int) -> int:
    assert x >= 0
    return x.bit_length()


def _rdiv(a: int, q: int) -> int:
    return (2 * a + q) // (2 * q)


class _C2Block:
    def __init__(self):
        self.C = [0] * 64
        self.n7 = 0
        self.ne = [0, 0]
        self.r = 0


def _decode_coder2(data: bytes, comps: list[C4Component]):
    """§6.4.5.5 The model."""
    rd = Coder2RangeDecoder(data)
    mdl = Coder2Model(rd)
    for i, comp in enumerate(comps):
        cc = 0 if i == 0 else 1
        Q = comp.Q
        decoded: dict = {}
        last = 0
        for bx, by in comp.stored:
            L = decoded.get((bx - 1, by))
            A = decoded.get((bx, by - 1))
            AL = decoded.get((bx - 1, by - 1))
            AR = decoded.get((bx + 1, by - 1))  # a block outside the grid is never stored
            B = _C2Block()
            C = B.C

            def D(X, z):
                return X.C[z] * Q[z]

            def prior(z):
                if L and A and AL and AR:
                    x = ((13 * (abs(L.C[z]) + abs(A.C[z])) + 6 * (abs(AL.C[z]) + abs(AR.C[z]))) * 27) >> 9
                elif L and A and AL:
                    x = (13 * (abs(L.C[z]) + abs(A.C[z])) + 6 * abs(AL.C[z])) >> 4
                elif L and A:
                    x = abs(L.C[z]) + abs(A.C[z])
                elif L:
                    x = 2 * abs(L.C[z])
                elif A:
                    x = 2 * abs(A.C[z])
                else:
                    return 10
                return min(_bitlen(x), 9)

            def boundary(X, z0, step):
                s = sum((-1) ** t * D(X, z0 + step * t) - D(B, z0 + step * t) for t in range(1, 8))
                return D(X, z0) + ((s * 11585 + 4096) >> 13)

            def check_range(a, neg):
                if a > 32768 or (a == 32768 and not neg):
                    raise SpecError("SUBJ coding 4 coder 2: coefficient outside 16 bits")

            # 1. Interior count
            bl = NZB[L.n7] if L else 0
            bu = NZB[A.n7] if A else 0
            bavg = NZB[(L.n7 + A.n7 + 1) >> 1] if (L and A) else max(bl, bu)
            n7 = mdl.tree(
                6,
                ("NZ7A", (cc * 14 + bavg) * 64),
                ("NZ7B", (bl * 14 + bu) * 64),
                ("NZ7C", cc * 64),
                ("NZ7", cc * 6),
            )
            if n7 > 49:
                raise SpecError(f"SUBJ coding 4 coder 2: interior count {n7} > 49")
            B.n7 = n7

            # 2. Interior coefficients
            rem = n7
            for ii in range(49):
                if rem == 0:
                    break
                z = INTERIOR[ii]
                band = BAND[ii]
                mb = prior(z)
                a = (abs(C[z - 8]) if z >= 16 else 0) + (abs(C[z - 1]) if z % 8 >= 2 else 0)
                ib = min(_bitlen(a), 6)
                nzb = NRB[rem]
                if rem < 49 - ii:
                    nz = mdl.mixed(
                        mdl.context("IZ1", (band * 10 + nzb) * 11 + mb),
                        mdl.context("IZ2", (ii * 10 + nzb) * 7 + ib),
                        mdl.context("IZ3", (band * 11 + mb) * 7 + ib),
                        mdl.weights("IZ", band),
                        stretch((rem * 4096) // (49 - ii)),
                    )
                    if nz == 0:
                        continue
                rem -= 1
                # ASSUMPTION: nzb keeps the value NRB(rem) had before this decrement (it is
                # defined with the other per-i quantities, before the bullets).
                e = mdl.exponent(
                    ("IE1", (band * 11 + mb) * 17),
                    ("IE2", (band * 7 + ib) * 17),
                    ("IE3", (band * 10 + nzb) * 17),
                    ("IE", 0),
                    f=1,
                    g=(mb - 1) if mb < 10 else None,
                )
                rel = 5 if mb == 10 else min(max(mb - e + 2, 0), 4)
                mag = mdl.mantissa(e, ("MANT", rel * 36))
                neg = mdl.bit_half()
                check_range(mag, neg)
                C[z] = -mag if neg else mag

            # 3. Edges
            for edge in (0, 1):
                across = 1 if edge == 0 else 8
                X = L if edge == 0 else A
                zt = {t: (8 * t if edge == 0 else t) for t in range(1, 8)}
                p = {}
                if X:
                    for t in range(1, 8):
                        z = zt[t]
                        p[t] = _rdiv(boundary(X, z, across), max(Q[z], 1))
                    np_ = sum(1 for t in range(1, 8) if p[t] != 0)
                else:
                    np_ = 8
                cX = X.ne[edge] if X else 8
                ne = mdl.tree(
                    3,
                    ("NZEA", ((edge * 7 + min(_bitlen(n7), 6)) * 9 + np_) * 8),
                    ("NZEB", ((edge * 9 + np_) * 9 + cX) * 8),
                    ("NZEC", ((cc * 2 + edge) * 14 + NZB[n7]) * 8),
                    ("NZE", (cc * 2 + edge) * 3),
                )
                B.ne[edge] = ne
                rem = ne
                for t in range(1, 8):
                    if rem == 0:
                        break
                    z = zt[t]
                    if X:
                        pt = p[t]
                        pb = 1 + min(_bitlen(abs(pt)), 10)
                        hint = 0 if pt == 0 else 1 if pt == 1 else 2 if pt >= 2 else 3 if pt == -1 else 4
                    else:
                        pt = None
                        pb = hint = 0
                    mb = prior(z)
                    ib = min(_bitlen(abs(C[z + across])), 6)
                    pos = edge * 7 + t - 1
                    if rem < 8 - t:
                        nz = mdl.mixed(
                            mdl.context("EZ1", (pos * 7 + rem - 1) * 12 + pb),
                            mdl.context("EZ2", pos * 11 + mb),
                            mdl.context("EZ3", (pos * 12 + pb) * 7 + ib),
                            mdl.weights("EZ", edge),
                            stretch((rem * 4096) // (8 - t)),
                        )
                        if nz == 0:
                            continue
                    rem -= 1
                    e = mdl.exponent(
                        ("EE1", (edge * 12 + pb) * 17),
                        ("EE2", (edge * 11 + mb) * 17),
                        ("EE3", (pos * 7 + rem) * 17),  # rem after the decrement
                        ("EE", edge * 17),
                        f=1,
                        g=(pb - 1) if X else None,
                    )
                    if not X:
                        rel = 0
                    else:
                        lp = _bitlen(abs(pt))
                        if lp < e:
                            rel = 1
                        elif lp > e:
                            rel = 4
                        elif e >= 2 and (abs(pt) >> (e - 2)) & 1:
                            rel = 3
                        else:
                            rel = 2
                    mag = mdl.mantissa(e, ("MANT", (6 + rel) * 36))
                    # ASSUMPTION: here too the sign bit 1 means negative (stated for the interior).
                    neg = mdl.bit_ctx(mdl.context("ESIGN", edge * 5 + hint))
                    check_range(mag, neg)
                    C[z] = -mag if neg else mag

            # 4. DC
            q00 = max(Q[0], 1)
            pl = boundary(L, 0, 1) if L else None
            pu = boundary(A, 0, 8) if A else None
            if L and A:
                pred = _rdiv((pl + pu) >> 1, q00)
                act = min(_bitlen(abs(pl - pu) // q00), 12)
            elif L:
                pred = _rdiv(pl, q00)
                act = 13
            elif A:
                pred = _rdiv(pu, q00)
                act = 13
            else:
                pred = last
                act = 14
            pred = min(max(pred, -32768), 32767)
            if L and A:
                rb = (L.r + A.r + 1) >> 1
            elif L:
                rb = L.r
            elif A:
                rb = A.r
            else:
                rb = 16
            rb = min(rb, 16)
            e = mdl.exponent(
                ("DC1", (cc * 15 + act) * 18),
                ("DC2", (cc * 14 + NZB[n7]) * 18),
                ("DC3", (cc * 17 + rb) * 18),
                ("DC", cc * 18),
                f=0,
                g=None,
            )
            B.r = e
            residual = 0
            if e > 0:
                mag = mdl.mantissa(e, ("DCM", cc * 36))
                # ASSUMPTION: sign bit 1 = negative, as for the interior.
                neg = mdl.bit_ctx(mdl.context("DCS", cc * 15 + act))
                residual = -mag if neg else mag
            # ASSUMPTION: with e = 0 the residual is 0 and C_B[0] = pred; last is updated
            # for every block.
            dc = pred + residual
            if not -32768 <= dc <= 32767:
                raise SpecError(f"SUBJ coding 4 coder 2: DC {dc} outside 16 bits")
            C[0] = dc
            last = dc
            decoded[(bx, by)] = B
        comp.coef = {key: blk.C for key, blk in decoded.items()}
    rd.finish()


def _decode_coder3(data: bytes, comps: list[C4Component], H: int):
    """§6.4.5.6: S coder-2 streams, each over a band of MCU rows seen as a whole grid."""
    vmax = max(c.v for c in comps)
    R = -(-H // (8 * vmax))
    if len(data) < 1:
        raise SpecError("SUBJ coding 4 coder 3: no segment count")
    S = data[0]
    if S == 0:
        raise SpecError("SUBJ coding 4 coder 3: S = 0")
    if len(data) < 6 * S - 1:
        raise SpecError("SUBJ coding 4 coder 3: data shorter than its segment table")
    starts = [0] + [_u16(data, 1 + 2 * k) for k in range(S - 1)] + [R]
    lengths = [_u32(data, 2 * S - 1 + 4 * k) for k in range(S)]
    for k in range(1, S):
        if not (1 <= starts[k] <= R - 1 and starts[k] > starts[k - 1]):
            raise SpecError(f"SUBJ coding 4 coder 3: segment start {starts[k]} out of order or range")
    if sum(lengths) != len(data) - (6 * S - 1):
        raise SpecError("SUBJ coding 4 coder 3: segment lengths do not add up to the data")
    pos = 6 * S - 1
    for k in range(S):
        bands = []
        for c in comps:
            lo, hi = min(starts[k] * c.v, c.nby), min(starts[k + 1] * c.v, c.nby)
            band = C4Component(c.h, c.v, c.t)
            band.Q = c.Q
            band.stored = [(bx, by - lo) for bx, by in c.stored if lo <= by < hi]
            bands.append((band, lo))
        _decode_coder2(data[pos : pos + lengths[k]], [b for b, _ in bands])
        pos += lengths[k]
        for c, (band, lo) in zip(comps, bands):
            c.coef.update({(bx, by + lo): C for (bx, by), C in band.coef.items()})


# ----- §6.4.6 Reconstruction ------------------------------------------------


def idct8(x):
    """§6.4.6.1 idct8 (before descaling), literally."""
    x0, x1, x2, x3, x4, x5, x6, x7 = x
    F = IDCT
    z1 = (x2 + x6) * F["F0541"]
    t2 = z1 - x6 * F["F1847"]
    t3 = z1 + x2 * F["F0765"]
    t0 = (x0 + x4) << 13
    t1 = (x0 - x4) << 13
    t10 = t0 + t3
    t13 = t0 - t3
    t11 = t1 + t2
    t12 = t1 - t2
    o0, o1, o2, o3 = x7, x5, x3, x1
    z1 = o0 + o3
    z2 = o1 + o2
    z3 = o0 + o2
    z4 = o1 + o3
    z5 = (z3 + z4) * F["F1175"]
    o0 = o0 * F["F0298"]
    o1 = o1 * F["F2053"]
    o2 = o2 * F["F3072"]
    o3 = o3 * F["F1501"]
    z1 = -z1 * F["F0899"]
    z2 = -z2 * F["F2562"]
    z3 = -z3 * F["F1961"] + z5
    z4 = -z4 * F["F0390"] + z5
    o0 += z1 + z3
    o1 += z2 + z4
    o2 += z2 + z3
    o3 += z1 + z4
    return [t10 + o3, t11 + o2, t12 + o1, t13 + o0, t13 - o0, t12 - o1, t11 - o2, t10 - o3]


def idct_islow(C, Q):
    """§6.4.6.1: 64 coefficients (natural order) and the table -> 8 rows of 8 samples."""
    D = [C[z] * Q[z] for z in range(64)]
    ws = [[0] * 8 for _ in range(8)]
    for c in range(8):
        y = idct8([D[8 * r + c] for r in range(8)])
        for r in range(8):
            ws[r][c] = (y[r] + (1 << 10)) >> 11
    out = [[0] * 8 for _ in range(8)]
    # ASSUMPTION: the clamp is normative for every value (the text's "pre-clamp value in
    # −512…511", where libjpeg's mod-1024 table agrees, is (y + 2^17) >> 18 before the + 128).
    for r in range(8):
        y = idct8(ws[r])
        for c in range(8):
            out[r][c] = min(max(((y[c] + (1 << 17)) >> 18) + 128, 0), 255)
    return out


def _sample(comp: C4Component, sx: int, sy: int) -> int:
    """§6.4.6.2."""
    assert 0 <= sx < comp.dw and 0 <= sy < comp.dh, "read outside dw x dh"
    blk = comp.samples.get((sx // 8, sy // 8))
    # A read of an unstored block would contradict §6.4.3 ("all lie in stored blocks").
    assert blk is not None, f"§6.4.6: sample ({sx}, {sy}) is in a block that is not stored"
    return blk[sy % 8][sx % 8]


def _upsample_at(comp: C4Component, x: int, y: int) -> int:
    """§6.4.6.3: the value U of component comp at output pixel (x, y)."""
    rh, rv, dw, dh = comp.rh, comp.rv, comp.dw, comp.dh
    S = lambda sx, sy: _sample(comp, sx, sy)  # noqa: E731

    def clamp(v, lo, hi):
        return lo if v < lo else hi if v > hi else v

    cx = x >> 1
    nx = clamp(cx - 1, 0, dw - 1) if x % 2 == 0 else clamp(cx + 1, 0, dw - 1)
    cy = y >> 1
    ny = clamp(cy - 1, 0, dh - 1) if y % 2 == 0 else clamp(cy + 1, 0, dh - 1)
    if (rh, rv) == (1, 1):
        return S(x, y)
    if (rh, rv) == (2, 1) and dw > 2:
        return (3 * S(cx, y) + S(nx, y) + 1 + (x & 1)) >> 2
    if (rh, rv) == (1, 2):
        return (3 * S(x, cy) + S(x, ny) + 1 + (y & 1)) >> 2
    if (rh, rv) == (2, 2) and dw > 2:
        T = lambda s: 3 * S(s, cy) + S(s, ny)  # noqa: E731
        return (3 * T(cx) + T(nx) + 8 - (x & 1)) >> 4
    return S(x // rh, y // rv)


def _colour(transform: int, U: list[int]) -> tuple:
    """§6.4.6.4."""
    if transform == 0:
        return tuple(U)
    Y, Cb, Cr = U

    def clamp(v):
        return 0 if v < 0 else 255 if v > 255 else v

    R = clamp(Y + ((91881 * (Cr - 128) + 32768) >> 16))
    G = clamp(Y + ((-22554 * (Cb - 128) + 32768 - 46802 * (Cr - 128)) >> 16))
    B = clamp(Y + ((116130 * (Cb - 128) + 32768) >> 16))
    return (R, G, B)


def _decode_coding4(payload: bytes, hd: dict, mask: np.ndarray) -> np.ndarray:
    """§6.4. Returns S as uint8 (H, W, C), set at the subject pixels only."""
    W, H, channels = hd["width"], hd["height"], hd["channels"]
    coder, transform, comps, data = _parse_coding4_header(payload, W, H)
    if not ((channels == 3 and len(comps) == 3) or (channels == 1 and len(comps) == 1)):
        raise SpecError(f"SUBJ coding 4: {len(comps)} components for channels = {channels}")
    for c in comps:
        c.stored = _select_blocks(c, mask)
    if coder == 1:
        _decode_coder1(data, comps)
    elif coder == 2:
        _decode_coder2(data, comps)
    else:
        _decode_coder3(data, comps, H)
    for c in comps:
        c.samples = {key: idct_islow(coef, c.Q) for key, coef in c.coef.items()}
    S = np.zeros((H, W, channels), np.uint8)
    for y, x in zip(*np.nonzero(mask)):
        U = [_upsample_at(c, int(x), int(y)) for c in comps]
        S[y, x, :] = _colour(transform, U)
    return S


def _decode_metadata(body: bytes):
    """§9. Returns the value bytes, or None if the chunk is malformed (skipped)."""
    if len(body) < 1:
        return None
    method = body[0]
    if method == 0:
        value = body[1:]
        if len(value) > MAX_METADATA:
            return None
    elif method == 1:
        try:
            value = brotli_capped(body[1:], MAX_METADATA)
        except SpecError:
            return None
    else:
        return None
    return value


def _metadata_valid(ctype: str, value: bytes) -> bool:
    """§9: an exif value starts II*\\0 or MM\\0*; an xmpd value is valid UTF-8."""
    if ctype == "exif":
        return value[:4] in (b"II*\x00", b"MM\x00*")
    if ctype == "xmpd":
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


# ---------------------------------------------------------------------------
# §8 Reconstruction
# ---------------------------------------------------------------------------


def upsample(B: np.ndarray, W: int, H: int, s: int) -> np.ndarray:
    """§8.1 separable fixed-point bicubic, channel by channel."""
    bh, bw, C = B.shape
    U = np.zeros((H, W, C), np.uint8)

    def clamp(v, lo, hi):
        return lo if v < lo else hi if v > hi else v

    for ch in range(C):
        src = [[int(B[r, x, ch]) for x in range(bw)] for r in range(bh)]
        # 1. horizontal pass
        T = [[0] * W for _ in range(bh)]
        for r in range(bh):
            for x in range(W):
                k, j = divmod(x, s)
                o, w = WEIGHTS[(s, j)]
                T[r][x] = sum(w[t] * src[r][clamp(k + o + t, 0, bw - 1)] for t in range(4))
        # 2. vertical pass
        for y in range(H):
            k, j = divmod(y, s)
            o, w = WEIGHTS[(s, j)]
            rows = [clamp(k + o + t, 0, bh - 1) for t in range(4)]
            for x in range(W):
                A = sum(w[t] * T[rows[t]][x] for t in range(4))
                U[y, x, ch] = clamp((A + (1 << 23)) >> 24, 0, 255)
    return U


def feather(O: np.ndarray, U: np.ndarray, mask: np.ndarray, F: int) -> np.ndarray:
    """§8.3 background-side feathering with a 3-4 chamfer distance carrying its source."""
    if F == 0:
        return O
    H, W = mask.shape
    INF = None  # "infinity": compare with a helper
    D = [[0 if mask[y, x] else INF for x in range(W)] for y in range(H)]
    src = [[(x, y) if mask[y, x] else None for x in range(W)] for y in range(H)]

    def relax(x, y, qx, qy, cost):
        if not (0 <= qx < W and 0 <= qy < H):
            return
        dq = D[qy][qx]
        if dq is None:
            return
        dp = D[y][x]
        if dp is None or dq + cost < dp:
            D[y][x] = dq + cost
            src[y][x] = src[qy][qx]

    for y in range(H):
        for x in range(W):
            relax(x, y, x - 1, y - 1, 4)
            relax(x, y, x, y - 1, 3)
            relax(x, y, x + 1, y - 1, 4)
            relax(x, y, x - 1, y, 3)
    for y in range(H - 1, -1, -1):
        for x in range(W - 1, -1, -1):
            relax(x, y, x + 1, y + 1, 4)
            relax(x, y, x, y + 1, 3)
            relax(x, y, x - 1, y + 1, 4)
            relax(x, y, x + 1, y, 3)

    R = 3 * (F + 1)
    out = O.copy()
    C = O.shape[2]
    for y in range(H):
        for x in range(W):
            if mask[y, x] or D[y][x] is None or D[y][x] >= R:
                continue
            qx, qy = src[y][x]
            w = R - D[y][x]
            for ch in range(C):
                e = int(O[qy, qx, ch]) - int(U[qy, qx, ch])
                v = int(U[y, x, ch]) + (2 * e * w + R) // (2 * R)  # // floors
                out[y, x, ch] = min(max(v, 0), 255)
    return out


# ---------------------------------------------------------------------------
# §2 File layout
# ---------------------------------------------------------------------------


def read_ppan(data: bytes) -> SpecImage:
    data = bytes(data)
    if data[:8] != SIGNATURE:
        raise SpecError("bad signature")
    pos = 8
    next_critical = 0  # index into CRITICAL_ORDER of the critical chunk expected next
    chunks: list[str] = []
    metadata: dict[str, bytes] = {}
    seen_ancillary: set[str] = set()
    hd = B = mask = S = None

    while True:
        if pos + 8 > len(data):
            raise SpecError("truncated file: no DONE chunk")
        length = _u32(data, pos)
        if length > MAX_CHUNK_LENGTH:
            raise SpecError(f"chunk length {length} > 2^30")
        type_bytes = data[pos + 4 : pos + 8]
        if not all(0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A for b in type_bytes):
            raise SpecError(f"chunk type {type_bytes!r} is not four ASCII letters")
        end = pos + 8 + length + 4
        if end > len(data):
            raise SpecError("truncated chunk")
        body = data[pos + 8 : pos + 8 + length]
        if _crc(type_bytes + body) != _u32(data, pos + 8 + length):
            raise SpecError(f"bad CRC in chunk {type_bytes!r}")
        pos = end
        ctype = type_bytes.decode("ascii")
        chunks.append(ctype)
        critical = not (type_bytes[0] & 0x20)

        if not critical:
            # ASSUMPTION: HEAD is the first chunk of the file; an ancillary chunk before
            # it is rejected (§2: "ancillary chunks may appear anywhere between HEAD and DONE").
            if next_critical == 0:
                raise SpecError("ancillary chunk before HEAD")
            if ctype not in METADATA_TYPES:
                continue  # unknown ancillary: skipped after the CRC check
            if next_critical > 1:
                continue  # §9: metadata counts only between HEAD and BGND; later ones are skipped
            if ctype in seen_ancillary:
                continue  # "a second copy is skipped" (the first counts even if malformed)
            seen_ancillary.add(ctype)
            value = _decode_metadata(body)
            if value is not None and _metadata_valid(ctype, value):
                metadata[ctype] = value
            continue

        if ctype not in CRITICAL_ORDER:
            raise SpecError(f"unknown critical chunk {ctype}")
        idx = CRITICAL_ORDER.index(ctype)
        if idx != next_critical:
            raise SpecError(f"critical chunk {ctype} missing, repeated or out of order")
        next_critical += 1

        if ctype == "HEAD":
            hd = _decode_head(body)
        elif ctype == "BGND":
            B = _decode_bgnd(body, hd)
        elif ctype == "MASK":
            mask = _decode_mask(body, hd)
        elif ctype == "SUBJ":
            S = _decode_subj(body, hd, mask)
        elif ctype == "DONE":
            if length != 0:
                raise SpecError("DONE is not empty")
            break  # bytes after DONE are ignored

    W, H, s, F = hd["width"], hd["height"], hd["scale"], hd["feather"]
    U = upsample(B, W, H, s)  # with s = 1 the table row (0, 4096, 0, 0) gives U = B
    O = U.copy()
    O[mask == 1] = S[mask == 1]  # §8.2
    O = feather(O, U, mask, F)  # §8.3
    return SpecImage(
        mode=MODES[hd["channels"]],
        width=W,
        height=H,
        scale=s,
        feather=F,
        mask=mask,
        pixels=O,
        background=B,
        metadata=metadata,
        chunks=chunks,
    )
