"""The JPEG-coefficient subject payload (spec/FORMAT.md §6.4): build it and read it back."""

from __future__ import annotations

import contextlib
import struct

import brotli
import numpy as np

from .._kernels import jpeg_coder
from .._kernels.jpeg_huffman import ZIGZAG
from .parser import Component, check_sampling, layout
from .select import kept_blocks
from ..streams import brotli_blocks

BROTLI, ARITH, ARITH_SEGMENTS = 1, 2, 3
CODERS = {"brotli": BROTLI, "arith": ARITH}
#: coder 3 (§6.4.5.6): a power-of-two count of segments of at least this many stored blocks
#: (each costs ~0.3 % in size for the contexts it learns afresh), at most MAX_SEGMENTS
SEGMENT_BLOCKS = 32768
MAX_SEGMENTS = 16
COLOUR_CODES = {"grey": 0, "rgb": 0, "ycbcr": 1}
Q_8BIT, Q_16BIT, Q_IJG_LUMA, Q_IJG_CHROMA = 0, 1, 2, 3
BROTLI_QUALITY = 11
BROTLI_WINDOW = 24
#: (quality, the least share of its bytes quality 11 is assumed to need): measured on 11
#: photos, quality 11 took 0.77-0.85 of quality 1's bytes and 0.86-0.90 of quality 9's
BROTLI_ESTIMATES = ((1, 0.7), (9, 0.82))

# ITU-T T.81 Annex K.1 tables (natural order), scaled by libjpeg's jpeg_quality_scaling.
_K1_LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]  # fmt: skip
_K1_CHROMA = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
] + [99] * 32  # fmt: skip


def ijg_table(kind: int, quality: int) -> np.ndarray:
    """libjpeg's table for ``quality`` 1..100 (force_baseline: values clamped to 1..255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    base = np.array(_K1_LUMA if kind == Q_IJG_LUMA else _K1_CHROMA, np.int64)
    return np.clip((base * scale + 50) // 100, 1, 255).astype(np.uint16)


def _table_bytes(q: np.ndarray) -> bytes:
    for kind in (Q_IJG_LUMA, Q_IJG_CHROMA):
        for quality in range(1, 101):
            if np.array_equal(ijg_table(kind, quality), q):
                return bytes([kind, quality])
    zz = q[ZIGZAG]
    if zz.max() <= 255:
        return bytes([Q_8BIT]) + zz.astype(np.uint8).tobytes()
    return bytes([Q_16BIT]) + zz.astype(">u2").tobytes()


def _brotli_stream(kept: list[np.ndarray]) -> bytes:
    """Coder 1 before Brotli: per component, 64 zigzag planes of mapped values, then escapes."""
    small, big = [], []
    for blocks in kept:
        if len(blocks) == 0:
            continue
        p = np.ascontiguousarray(blocks[:, ZIGZAG].T, dtype=np.int32)  # k-major
        p[0, 1:] = ((np.diff(p[0]) + 32768) & 0xFFFF) - 32768  # DC differences, wrapped to int16
        z = ((p << 1) ^ (p >> 31)).ravel()  # 2V for V >= 0, -2V - 1 for V < 0
        small.append(np.minimum(z, 255).astype(np.uint8))
        big.append(z[z >= 255] - 255)
    if not small:
        return b""
    return np.concatenate(small).tobytes() + np.concatenate(big).astype(">u2").tobytes()


def _grids(keep: list[np.ndarray], tables: list[int]):
    """(index int32[m], comps int64[c, 5], counts) for the coefficient kernels."""
    index, comps, counts, n, off = [], [], [], 0, 0
    for ci, k in enumerate(keep):
        g = np.full(k.shape, -1, np.int32)
        cnt = int(np.count_nonzero(k))
        g[k] = np.arange(n, n + cnt, dtype=np.int32)
        index.append(g.ravel())
        comps.append([off, k.shape[0], k.shape[1], ci, tables[ci]])
        off += k.size
        n += cnt
        counts.append(cnt)
    return np.concatenate(index), np.array(comps, np.int64), counts


@contextlib.contextmanager
def segments_of(blocks: int):
    """Within the block, coder 3 aims at segments of ``blocks`` stored blocks: 1 gives
    segments to images of a few blocks (tests, fuzz seeds). Process-wide, not thread-safe."""
    global SEGMENT_BLOCKS
    old, SEGMENT_BLOCKS = SEGMENT_BLOCKS, blocks
    try:
        yield
    finally:
        SEGMENT_BLOCKS = old


def _floor_pow2(n: int) -> int:
    return 1 << (n.bit_length() - 1) if n > 0 else 1


def _mcu_rows(comps: list[Component]) -> int:
    """R of §6.4.5.6: the frame's MCU rows (a component stores v block rows per MCU row)."""
    return comps[0].rows // comps[0].v


def _cuts(keep: list[np.ndarray], comps: list[Component], count: int) -> list[int]:
    """The first MCU row of segments 1 .. count - 1 (§6.4.5.6), cut where the stored blocks
    split evenly; fewer where rows are too few."""
    rows = _mcu_rows(comps)
    per_row = np.zeros(rows, np.int64)
    for k, c in zip(keep, comps):
        np.add.at(per_row, np.arange(k.shape[0]) // c.v, np.count_nonzero(k, axis=1))
    cum = np.cumsum(per_row)
    cuts = {int(np.searchsorted(cum, cum[-1] * j / count)) + 1 for j in range(1, count)}
    return sorted(r for r in cuts if 0 < r < rows)


def _bands(grid_info: np.ndarray, comps: list[Component], cuts: list[int]) -> list[np.ndarray]:
    """Per segment, the kernels' component table of its band of block rows (§6.4.5.6)."""
    edges = [0, *cuts, _mcu_rows(comps)]
    bands = []
    for r0, r1 in zip(edges, edges[1:]):
        band = grid_info.copy()
        for row, c in zip(band, comps):
            off, nby, nbx = row[:3]
            b0, b1 = min(r0 * c.v, nby), min(r1 * c.v, nby)
            row[0], row[1] = off + b0 * nbx, b1 - b0
        bands.append(band)
    return bands


def build(img, mask: np.ndarray, coder: str = "auto") -> bytes:
    """The payload for ``img`` (a parser.JpegImage) and ``mask`` (H, W)."""
    if coder not in ("auto", "brotli", "arith"):
        raise ValueError(f"unknown coder {coder!r}")
    comps = img.components
    tables: list[bytes] = []
    refs = []
    for q in img.qtables:
        tb = _table_bytes(q)
        if tb not in tables:
            tables.append(tb)
        refs.append(tables.index(tb))
    head = struct.pack(">HHBB", img.width, img.height, COLOUR_CODES[img.colour], len(comps))
    for c, t in zip(comps, refs):
        head += bytes([(c.h << 4) | c.v, t])
    head += bytes([len(tables)]) + b"".join(tables)
    keep = kept_blocks(mask, comps)
    kept = [np.ascontiguousarray(img.blocks(ci)[k]) for ci, k in enumerate(keep)]
    candidates = []
    if coder in ("auto", "arith"):
        index, grid_info, counts = _grids(keep, list(range(len(comps))))
        coef = np.concatenate(kept) if kept else np.zeros((0, 64), np.int16)
        cuts = _cuts(keep, comps, min(MAX_SEGMENTS, _floor_pow2(sum(counts) // SEGMENT_BLOCKS)))
        streams = jpeg_coder.encode_segments(coef, index, _bands(grid_info, comps, cuts), img.qtables)
        if cuts:
            table = struct.pack(f">B{len(cuts)}H{len(streams)}I", len(streams), *cuts, *map(len, streams))
            candidates.append(bytes([ARITH_SEGMENTS]) + head + table + b"".join(streams))
        else:
            candidates.append(bytes([ARITH]) + head + streams[0])
    if coder in ("auto", "brotli"):
        stream = _brotli_stream(kept)
        if coder == "brotli" or _brotli_could_win(stream, len(candidates[0])):
            data = brotli.compress(stream, quality=BROTLI_QUALITY, lgwin=BROTLI_WINDOW)
            candidates.append(bytes([BROTLI]) + head + data)
    return min(candidates, key=len)


def _brotli_could_win(stream: bytes, arith: int) -> bool:
    """Whether coder 1 at quality 11 (~1 MB/s) might come under ``arith`` bytes, judged
    from qualities 1 and 9 (~100x and ~25x faster); on photos coder 2 took 0.76-0.90 of
    quality 11's bytes, so the estimates nearly always settle it."""
    for quality, share in BROTLI_ESTIMATES:
        if share * len(brotli.compress(stream, quality=quality, lgwin=BROTLI_WINDOW)) >= arith:
            return False
    return True


class Header:
    """The fields of a payload before its coefficient data."""

    def __init__(self, payload: bytes, shape: tuple[int, int]):
        p = memoryview(payload)
        if len(p) < 7:
            raise OSError("JPEG subject payload is too short")
        self.coder = p[0]
        if self.coder not in (BROTLI, ARITH, ARITH_SEGMENTS):
            raise OSError(f"unknown JPEG subject coder {self.coder}")
        self.width, self.height, colour, n = struct.unpack_from(">HHBB", p, 1)
        if (self.height, self.width) != tuple(shape):
            raise OSError(f"JPEG subject is {self.width}x{self.height}, the mask {shape[1]}x{shape[0]}")
        if n not in (1, 3) or colour > 1 or (colour == 1 and n != 3):
            raise OSError("JPEG subject component count or colour transform out of range")
        self.colour = ("ycbcr" if colour else "rgb") if n == 3 else "grey"
        pos = 7
        if len(p) < pos + 2 * n + 1:
            raise OSError("JPEG subject payload is too short")
        sampling, refs = [], []
        for _ in range(n):
            h, v, t = p[pos] >> 4, p[pos] & 15, p[pos + 1]
            pos += 2
            if not (1 <= h <= 4 and 1 <= v <= 4):
                raise OSError("JPEG subject sampling factor out of range")
            sampling.append((h, v))
            refs.append(t)
        if n == 1 and sampling != [(1, 1)]:
            raise OSError("JPEG subject: a single component must have sampling 1x1")
        try:
            check_sampling(sampling)
        except ValueError as exc:
            raise OSError(f"JPEG subject: {exc}") from None
        ntables = p[pos]
        pos += 1
        if not 1 <= ntables <= n or any(t >= ntables for t in refs):
            raise OSError("JPEG subject quantisation table count or index out of range")
        tables = []
        for _ in range(ntables):
            if pos >= len(p):
                raise OSError("JPEG subject payload is too short")
            kind = p[pos]
            pos += 1
            if kind in (Q_IJG_LUMA, Q_IJG_CHROMA):
                if pos >= len(p) or not 1 <= p[pos] <= 100:
                    raise OSError("JPEG subject quality out of range")
                tables.append(ijg_table(kind, p[pos]))
                pos += 1
            elif kind in (Q_8BIT, Q_16BIT):
                size = 64 * (kind + 1)
                if pos + size > len(p):
                    raise OSError("JPEG subject payload is too short")
                raw = np.frombuffer(p[pos : pos + size], ">u2" if kind else np.uint8)
                q = np.zeros(64, np.uint16)
                q[ZIGZAG] = raw
                tables.append(q)
                pos += size
            else:
                raise OSError(f"unknown JPEG subject quantisation table kind {kind}")
        self.qtables = np.stack([tables[t] for t in refs])
        self.components: list[Component] = layout(self.width, self.height, sampling)
        self.data = bytes(p[pos:])


def read(payload: bytes, mask: np.ndarray):
    """(header, blocks) of a payload; OSError if malformed (the header's at once, the
    coefficients' while ``blocks`` is iterated).

    ``blocks`` yields, component by component, (coef int16[k, 64], index int32[nby, nbx])
    as pixels.render takes them. Coder 1's coefficients are converted one component at a
    time from its decompressed values, which are released as they are used.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise OSError("JPEG subject mask must be 2-D")
    head = Header(payload, mask.shape)
    keep = kept_blocks(mask, head.components)
    index, grid_info, counts = _grids(keep, list(range(len(head.components))))
    grids = [np.ascontiguousarray(index[off : off + nby * nbx].reshape(nby, nbx)) for off, nby, nbx, *_ in grid_info]
    if head.coder == BROTLI:
        return head, _brotli_blocks(head.data, counts, grids)
    if head.coder == ARITH:
        return head, _arith_blocks(head, [head.data], index, [grid_info], counts, grids)
    cuts, streams = _segment_table(head.data, _mcu_rows(head.components))
    return head, _arith_blocks(head, streams, index, _bands(grid_info, head.components, cuts), counts, grids)


def _segment_table(data: bytes, rows: int) -> tuple[list[int], list[bytes]]:
    """Coder 3's segment starts and streams (§6.4.5.6); OSError if they do not add up."""
    if not data or data[0] == 0:
        raise OSError("JPEG subject segment count missing or 0")
    n = data[0]
    size = 1 + 2 * (n - 1) + 4 * n
    if len(data) < size:
        raise OSError("JPEG subject segment table is too short")
    fields = struct.unpack_from(f">{n - 1}H{n}I", data, 1)
    cuts, lengths = list(fields[: n - 1]), fields[n - 1 :]
    if any(not a < b for a, b in zip([0, *cuts], [*cuts, rows])):
        raise OSError("JPEG subject segment starts out of order or beyond the image")
    if size + sum(lengths) != len(data):
        raise OSError("JPEG subject segment lengths do not match the payload")
    starts = np.cumsum([size, *lengths])
    return cuts, [data[a:b] for a, b in zip(starts, starts[1:])]


def _arith_blocks(head, streams, index, bands, counts, grids):
    """Coders 2 and 3: the segments' streams decoded on up to one thread each."""
    coef = np.zeros((sum(counts), 64), np.int16)
    status = jpeg_coder.decode_segments(streams, coef, index, bands, head.qtables)
    if status:
        raise OSError(f"PPAN SUBJ JPEG coefficients: {jpeg_coder.CODER_ERRORS.get(status, status)}")
    for grid in grids:
        yield coef, grid


def _brotli_blocks(data: bytes, counts: list[int], grids: list[np.ndarray]):
    """Coder 1 (§6.4.4): the stream is decompressed block by block into one uint16 array of
    mapped values per component (the first part), then its escapes are added in place;
    only then is a component converted to coefficients, and its values dropped."""
    what = "SUBJ JPEG coefficients"
    values = [np.empty(64 * n, np.uint16) for n in counts]
    first = 64 * sum(counts)
    got, escapes, c, cursor, high = 0, None, 0, 0, -1
    for block in brotli_blocks(data, 3 * first, what):
        start = 0
        if got < first:  # the first part: one byte per value, component after component
            take = min(first - got, block.size)
            _scatter(values, got, block[:take])
            got, start = got + take, take
        if got == first and escapes is None:
            escapes = [int(np.count_nonzero(v == 255)) for v in values]
        while start < block.size:
            while c < len(values) and escapes[c] == 0:
                c, cursor = c + 1, 0
            if c == len(values):
                raise OSError(f"PPAN {what}: bytes after the last escape")
            start, cursor, high, escapes[c], status = jpeg_coder.add_escapes(
                values[c], cursor, high, escapes[c], block, start)
            if status:
                raise OSError(f"PPAN {what}: a value out of range")
    if got < first:
        raise OSError(f"PPAN {what} are too short")
    if escapes is None:
        escapes = [int(np.count_nonzero(v == 255)) for v in values]
    if any(escapes):
        raise OSError(f"PPAN {what}: escapes missing")
    base = 0
    for c, grid in enumerate(grids):  # a component's own array: its block numbers from 0
        coef = jpeg_coder.unmap_values(values[c], counts[c])
        values[c] = None
        yield coef, np.where(grid >= 0, grid - base, -1).astype(np.int32)
        base += counts[c]


def _scatter(values: list[np.ndarray], at: int, part: np.ndarray) -> None:
    """Write ``part`` at offset ``at`` of the concatenation of ``values``."""
    for v in values:
        if at < v.size and part.size:
            take = min(v.size - at, part.size)
            v[at : at + take] = part[:take]
            part = part[take:]
        at = max(at - v.size, 0)
