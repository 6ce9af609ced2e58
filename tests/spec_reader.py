"""An independent PPAN decoder written only from spec/FORMAT.md.

This module is a conformance check of the specification: it implements what the
text says, section by section, and nothing from the project's own code.  It is
written for clarity, not speed (plain Python loops over pixels).

Public API:
    read_ppan(data) -> SpecImage
    SpecError       raised for every violation the spec says a decoder rejects

Choices made where the spec is silent or ambiguous are marked "ASSUMPTION".
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
    if coding not in (0, 1, 2, 3):
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

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.range = 0xFFFFFFFF
        self.code = 0
        for _ in range(4):
            self.code = self.code * 256 + self._next_byte()

    def _next_byte(self) -> int:
        if self.pos >= len(self.data):
            raise SpecError("SUBJ coding 3: payload ends before the last residual")
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
            raise SpecError(f"SUBJ coding 3: {len(self.data) - self.pos} payload bytes left over")


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


def _decode_coding3(payload: bytes, channels: int, boxmask: np.ndarray):
    """Returns the planes P0 … P(c−1) as lists of rows over the box (§6.3)."""
    bhs, bws = boxmask.shape
    rd = RangeDecoder(payload)
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
                if j == 0:
                    Wv = Vp[0][i - 1] if i > 0 else 0
                    Nv = NWv = NEv = Wv
                else:
                    Nv = Vp[j - 1][i]
                    Wv = Vp[j][i - 1] if i > 0 else Nv
                    NWv = Vp[j - 1][i - 1] if i > 0 else Nv
                    NEv = Vp[j - 1][i + 1] if i < bws - 1 else Nv
                pred = _med(Wv, Nv, NWv)
                if not subject:
                    Vp[j][i] = pred
                    Ep[j][i] = 0
                    continue
                eW = e_at(Ep, i - 1, j)
                eN = e_at(Ep, i, j - 1)
                eNW = e_at(Ep, i - 1, j - 1)
                eNE = e_at(Ep, i + 1, j - 1)
                act = abs(Wv - NWv) + abs(Nv - NWv) + abs(Nv - NEv) + abs(eW) + abs(eN) + abs(eNW) + abs(eNE)
                q = sum(1 for th in C3_THRESHOLDS if th <= act)
                colour = channels in (3, 4) and p in (1, 2)
                t = (int(Wv == NWv) + 2 * int(Nv == NWv)) if colour else 0
                u = _sgn3(E[1][j][i]) if (channels in (3, 4) and p == 2) else 0
                c = q + 9 * (t + 4 * u)
                s = 3 * _sgn3(eW) + _sgn3(eN) + 9 * _sgn3(eNE + eNW) + 27 * u
                e = _c3_residual(rd, Zs[p][c], Ss[p][s])
                Vp[j][i] = (pred + e) % 256
                Ep[j][i] = e
    rd.finish()
    return V


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
    # ASSUMPTION: a value that breaks the table's description is "malformed".
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
