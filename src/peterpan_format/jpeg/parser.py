"""JPEG marker parsing and coefficient extraction (ITU-T T.81), as libjpeg-turbo reads it.

``read_jpeg(data)`` walks the marker segments in Python (every length checked against the
data) and hands each scan's entropy-coded data to the Numba kernel of
``_kernels.jpeg_huffman``. Anything this module does not reproduce exactly the way
Pillow (libjpeg-turbo) decodes it raises ``ValueError("unsupported JPEG: ...")``; a
malformed file raises ``ValueError("invalid JPEG: ...")``. Callers fall back to the
pixel path on either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._kernels import jpeg_huffman as kh

MAX_PIXELS = 1 << 28  # refuse larger frames before allocating coefficient storage
MAX_BLOCKS_IN_MCU = 10  # T.81 B.2.3 / libjpeg D_MAX_BLOCKS_IN_MCU

SOF_SUPPORTED = {0xC0: False, 0xC1: False, 0xC2: True}  # marker -> progressive
SOF_UNSUPPORTED = {
    0xC3: "lossless",
    0xC5: "hierarchical",
    0xC6: "hierarchical",
    0xC7: "hierarchical",
    0xC9: "arithmetic coding",
    0xCA: "arithmetic coding",
    0xCB: "arithmetic coding",
    0xCD: "arithmetic coding",
    0xCE: "arithmetic coding",
    0xCF: "arithmetic coding",
}


def unsupported(what: str) -> ValueError:
    return ValueError(f"unsupported JPEG: {what}")


def invalid(what: str) -> ValueError:
    return ValueError(f"invalid JPEG: {what}")


@dataclass
class Component:
    """One colour component of the frame and where its blocks are stored."""

    ident: int
    h: int
    v: int
    tq: int
    dw: int = 0  # samples across: ceil(W * h / hmax)
    dh: int = 0  # samples down
    nbx: int = 0  # blocks holding samples: ceil(dw / 8)
    nby: int = 0
    stride: int = 0  # blocks per row of storage: MCUs across * h
    rows: int = 0  # block rows of storage: MCUs down * v
    offset: int = 0  # index of the component's first block in ``coef``


@dataclass
class JpegImage:
    """The quantised coefficients of a JPEG and everything needed to turn them into pixels."""

    width: int
    height: int
    components: list[Component]
    colour: str  # "grey", "ycbcr" or "rgb"
    progressive: bool
    qtables: np.ndarray  # uint16[ncomp, 64], natural order, as latched by each component
    coef: np.ndarray = field(repr=False)  # int16[nblocks, 64], natural order

    @property
    def hmax(self) -> int:
        return max(c.h for c in self.components)

    @property
    def vmax(self) -> int:
        return max(c.v for c in self.components)

    def blocks(self, ci: int) -> np.ndarray:
        """int16[nby, nbx, 64] view of component ``ci``'s blocks that hold samples."""
        c = self.components[ci]
        grid = self.coef[c.offset : c.offset + c.rows * c.stride].reshape(c.rows, c.stride, 64)
        return grid[: c.nby, : c.nbx]


def layout(width: int, height: int, sampling: list[tuple[int, int]]) -> list[Component]:
    """Components with their sizes and storage for a frame (T.81 A.1.1), tq left at 0."""
    hmax = max(h for h, _ in sampling)
    vmax = max(v for _, v in sampling)
    mcus_x = -(-width // (8 * hmax))
    mcus_y = -(-height // (8 * vmax))
    comps, offset = [], 0
    for i, (h, v) in enumerate(sampling):
        dw = -(-width * h // hmax)
        dh = -(-height * v // vmax)
        c = Component(i, h, v, 0, dw, dh, -(-dw // 8), -(-dh // 8), mcus_x * h, mcus_y * v, offset)
        offset += c.stride * c.rows
        comps.append(c)
    return comps


def check_sampling(sampling: list[tuple[int, int]]) -> None:
    """Refuse sampling factors whose upsampling libjpeg-turbo does not do as we do."""
    hmax = max(h for h, _ in sampling)
    vmax = max(v for _, v in sampling)
    for h, v in sampling:
        if hmax % h or vmax % v:
            raise unsupported(f"sampling factors {sampling} (fractional upsampling)")


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise invalid("unexpected end of data")
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        return (self.u8() << 8) | self.u8()

    def segment(self) -> bytes:
        length = self.u16()
        if length < 2 or self.pos + length - 2 > len(self.data):
            raise invalid("marker segment length out of range")
        body = self.data[self.pos : self.pos + length - 2]
        self.pos += length - 2
        return body

    def marker(self) -> int:
        """Next marker code, skipping fill bytes and (as libjpeg does) stray bytes."""
        data, n = self.data, len(self.data)
        while True:
            i = data.find(b"\xff", self.pos)
            if i < 0 or i + 1 >= n:
                raise invalid("no EOI marker")
            j = i + 1
            while j < n and data[j] == 0xFF:
                j += 1
            if j >= n:
                raise invalid("no EOI marker")
            if data[j] != 0:
                self.pos = j + 1
                return data[j]
            self.pos = j + 1  # 0xFF 0x00 outside a scan: junk


def read_jpeg(data: bytes, max_pixels: int = MAX_PIXELS) -> JpegImage:
    """Parse a JPEG file and entropy-decode all its scans into quantised coefficients.

    Frames of more than ``max_pixels`` pixels, or with more 8x8 blocks than the data
    could code (each block costs at least one bit of entropy-coded data), are refused
    before their coefficient storage is allocated.
    """
    data = bytes(data)
    arr = np.frombuffer(data, np.uint8)
    r = _Reader(data)
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        raise invalid("no SOI marker")
    r.pos = 2
    qtables: dict[int, np.ndarray] = {}
    luts = np.zeros((8, 65536), np.int32)
    defined = [False] * 8
    interval = 0
    saw_jfif = saw_adobe = False
    adobe_transform = 0
    frame = None
    comps: list[Component] = []
    latched: list[np.ndarray | None] = []
    coef_bits = None  # progressive: per component, per coefficient, current Al (-1 unsent)
    seen_in_scan: list[bool] = []
    scans = 0
    while True:
        code = r.marker()
        if code == 0xD9:  # EOI
            break
        if code == 0xD8:
            raise invalid("second SOI marker")
        if 0xD0 <= code <= 0xD7 or code == 0x01:  # stray RSTn / TEM: no segment
            continue
        if code == 0xDC:
            raise unsupported("DNL marker")
        if code == 0xCC:
            raise unsupported("arithmetic coding (DAC)")
        body = r.segment()
        if code == 0xE0:
            if len(body) >= 14 and body[:5] == b"JFIF\x00":
                saw_jfif = True
        elif code == 0xEE:
            if len(body) >= 12 and body[:5] == b"Adobe":
                saw_adobe = True
                adobe_transform = body[11]
        elif code == 0xDB:
            _parse_dqt(body, qtables)
        elif code == 0xC4:
            _parse_dht(body, luts, defined)
        elif code == 0xDD:
            if len(body) != 2:
                raise invalid("DRI length")
            interval = (body[0] << 8) | body[1]
        elif code in SOF_UNSUPPORTED:
            raise unsupported(SOF_UNSUPPORTED[code])
        elif code in SOF_SUPPORTED:
            if frame is not None:
                raise invalid("second SOF marker")
            frame = _parse_sof(body, SOF_SUPPORTED[code], max_pixels)
            width, height, progressive, idents, sampling, tqs = frame
            comps = layout(width, height, sampling)
            for c, ident, tq in zip(comps, idents, tqs):
                c.ident, c.tq = ident, tq
            coded = sum(c.nbx * c.nby for c in comps)
            if coded > 8 * len(data):
                raise invalid(f"{width}x{height} needs more data than the file holds")
            nblocks = comps[-1].offset + comps[-1].stride * comps[-1].rows
            coef = np.zeros((nblocks, 64), np.int16)
            latched = [None] * len(comps)
            seen_in_scan = [False] * len(comps)
            if progressive:
                coef_bits = np.full((len(comps), 64), -1, np.int64)
        elif code == 0xDA:
            if frame is None:
                raise invalid("SOS before SOF")
            width, height, progressive = frame[0], frame[1], frame[2]
            scan = _parse_sos(body, comps, progressive)
            ids, tables, ss, se, ah, al = scan
            for ci in ids:
                if latched[ci] is None:
                    if comps[ci].tq not in qtables:
                        raise invalid("quantisation table not defined")
                    latched[ci] = qtables[comps[ci].tq].copy()
                seen_in_scan[ci] = True
            for ci, (td, ta) in zip(ids, tables):
                need_dc = not progressive or (ss == 0 and ah == 0)
                need_ac = not progressive or ss > 0
                if (need_dc and not defined[td]) or (need_ac and not defined[4 + ta]):
                    raise invalid("Huffman table not defined")
            if progressive:
                _update_coef_bits(coef_bits, ids, ss, se, ah, al)
            hmax = max(c.h for c in comps)
            vmax = max(c.v for c in comps)
            rows = []
            for ci, (td, ta) in zip(ids, tables):
                c = comps[ci]
                rows.append([c.offset, c.stride, c.h, c.v, td, ta, c.nbx, c.nby])
            if len(ids) > 1 and sum(comps[ci].h * comps[ci].v for ci in ids) > MAX_BLOCKS_IN_MCU:
                raise invalid("too many blocks in an MCU")
            params = np.array(
                [-(-width // (8 * hmax)), -(-height // (8 * vmax)), ss, se, ah, al, interval, int(progressive)],
                np.int64,
            )
            status, end = kh.decode_scan(arr, r.pos, coef, np.array(rows, np.int64), luts, params)
            if status:
                raise invalid(kh.HUFF_ERRORS.get(status, f"scan status {status}"))
            r.pos = end
            scans += 1
        # COM, other APPn and unknown markers with a length: skipped
    if frame is None or scans == 0:
        raise invalid("no image data")
    if not all(seen_in_scan):
        raise unsupported("a component with no scan")
    width, height, progressive = frame[0], frame[1], frame[2]
    if progressive and _smoothing_used(coef_bits, latched):
        raise unsupported("progressive JPEG with unrefined low AC coefficients (libjpeg block smoothing)")
    if len(comps) == 1:
        colour = "grey"
    elif saw_jfif:
        colour = "ycbcr"
    elif saw_adobe:
        colour = "rgb" if adobe_transform == 0 else "ycbcr"
    else:
        ident = tuple(c.ident for c in comps)
        colour = "rgb" if ident == (82, 71, 66) else "ycbcr"
    return JpegImage(width, height, comps, colour, progressive, np.stack(latched), coef)


def _parse_dqt(body: bytes, qtables: dict) -> None:
    i = 0
    while i < len(body):
        pq, tq = body[i] >> 4, body[i] & 15
        i += 1
        if pq > 1 or tq > 3:
            raise invalid("DQT table precision or index")
        size = 64 * (pq + 1)
        if i + size > len(body):
            raise invalid("DQT length")
        raw = np.frombuffer(body[i : i + size], ">u2" if pq else np.uint8).astype(np.uint16)
        table = np.zeros(64, np.uint16)
        table[kh.ZIGZAG] = raw
        qtables[tq] = table
        i += size


def _parse_dht(body: bytes, luts: np.ndarray, defined: list) -> None:
    i = 0
    while i < len(body):
        if i + 17 > len(body):
            raise invalid("DHT length")
        tc, th = body[i] >> 4, body[i] & 15
        if tc > 1 or th > 3:
            raise invalid("DHT table class or index")
        counts = list(body[i + 1 : i + 17])
        total = sum(counts)
        i += 17
        if total > 256 or i + total > len(body):
            raise invalid("DHT length")
        symbols = list(body[i : i + total])
        i += total
        if tc == 0 and any(s > 15 for s in symbols):
            raise invalid("DC Huffman symbol above 15")
        lut = kh.build_lut(counts, symbols)
        if lut is None:
            raise invalid("bad Huffman table")
        luts[4 * tc + th] = lut
        defined[4 * tc + th] = True


def _parse_sof(body: bytes, progressive: bool, max_pixels: int):
    if len(body) < 6:
        raise invalid("SOF length")
    precision = body[0]
    height = (body[1] << 8) | body[2]
    width = (body[3] << 8) | body[4]
    n = body[5]
    if precision != 8:
        raise unsupported(f"{precision}-bit samples")
    if height == 0:
        raise unsupported("height defined by DNL")
    if width == 0:
        raise invalid("zero width")
    if n not in (1, 3):
        raise unsupported(f"{n} components")
    if len(body) != 6 + 3 * n:
        raise invalid("SOF length")
    if width * height > max_pixels:
        raise unsupported(f"{width}x{height} is too many pixels")
    idents, sampling, tqs = [], [], []
    for k in range(n):
        ident, hv, tq = body[6 + 3 * k : 9 + 3 * k]
        h, v = hv >> 4, hv & 15
        if not (1 <= h <= 4 and 1 <= v <= 4) or tq > 3:
            raise invalid("SOF sampling factor or table index")
        if ident in idents:
            raise invalid("duplicate component identifier")
        idents.append(ident)
        sampling.append((h, v))
        tqs.append(tq)
    if n == 1:
        sampling = [(1, 1)]  # a lone component is never subsampled (T.81 A.2.2)
    check_sampling(sampling)
    return width, height, progressive, idents, sampling, tqs


def _parse_sos(body: bytes, comps: list[Component], progressive: bool):
    if len(body) < 1:
        raise invalid("SOS length")
    ns = body[0]
    if not 1 <= ns <= 4 or len(body) != 4 + 2 * ns:
        raise invalid("SOS length or component count")
    ids, tables = [], []
    by_ident = {c.ident: i for i, c in enumerate(comps)}
    for k in range(ns):
        cs, t = body[1 + 2 * k], body[2 + 2 * k]
        if cs not in by_ident or by_ident[cs] in ids:
            raise invalid("SOS component")
        td, ta = t >> 4, t & 15
        if td > 3 or ta > 3:
            raise invalid("SOS table index")
        ids.append(by_ident[cs])
        tables.append((td, ta))
    ss, se, ahl = body[1 + 2 * ns], body[2 + 2 * ns], body[3 + 2 * ns]
    ah, al = ahl >> 4, ahl & 15
    if progressive:
        if (ss == 0 and se != 0) or (ss > 0 and (se < ss or se > 63 or ns != 1)):
            raise invalid("progressive scan band")
        if (ah != 0 and al != ah - 1) or al > 13:
            raise invalid("successive approximation bits")
    elif (ss, se, ah, al) != (0, 63, 0, 0):
        raise unsupported("sequential scan that is not a full band")
    return ids, tables, ss, se, ah, al


def _update_coef_bits(coef_bits, ids, ss, se, ah, al) -> None:
    """Track each coefficient's successive-approximation bit (-1 = never sent) and refuse
    progressions that libjpeg only warns about: an AC scan before the DC scan, a first
    scan of a coefficient already sent, a refinement that does not continue the last."""
    for ci in ids:
        bits = coef_bits[ci]
        if ss > 0 and bits[0] < 0:
            raise unsupported("AC scan before the DC scan")
        for k in range(ss, se + 1):
            if (ah == 0 and bits[k] >= 0) or (ah > 0 and bits[k] != ah):
                raise unsupported("inconsistent progression")
            bits[k] = al


def _smoothing_used(coef_bits, latched) -> bool:
    """True where libjpeg-turbo's progressive block smoothing would alter the output."""
    q_positions = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24]  # DC and the first 9 AC, natural order
    useful = False
    for ci, q in enumerate(latched):
        if any(q[p] == 0 for p in q_positions):
            return False
        if coef_bits[ci, 0] < 0:
            return False
        if any(coef_bits[ci, k] != 0 for k in range(1, 10)):
            useful = True
    return useful
