"""A small baseline JPEG writer from quantised coefficients (pure Python, for tests).

It writes any sampling factors, interleaved or one scan per component, with restart
intervals, JFIF or Adobe markers and optimal Huffman tables (T.81 K.2), so tests can
build the JPEG kinds Pillow's encoder does not make (4:4:0, 4:1:1, RGB, odd component
ids, extreme coefficients) and compare our decoder with Pillow's on them.
"""

from __future__ import annotations

import struct

import numpy as np

from .._kernels.jpeg_huffman import ZIGZAG
from .parser import layout


def _category(v: int) -> int:
    return abs(int(v)).bit_length()


def _bits_of(v: int, s: int) -> int:
    return v if v >= 0 else v + (1 << s) - 1


def _huffman_lengths(freq: dict[int, int]) -> tuple[list[int], list[int]]:
    """(counts[16], symbols) of an optimal length-limited code (T.81 K.2)."""
    freq = dict(freq)
    if not freq:
        freq = {0: 1}
    nodes = [[f, [s]] for s, f in freq.items()] + [[0, [256]]]  # 256 reserves all-ones
    size = {s: 0 for s in list(freq) + [256]}
    while len(nodes) > 1:
        nodes.sort(key=lambda n: n[0])
        a, b = nodes[0], nodes[1]
        for s in a[1] + b[1]:
            size[s] += 1
        nodes = [[a[0] + b[0], a[1] + b[1]]] + nodes[2:]
    bits = [0] * 33
    for s, n in size.items():
        bits[n] += 1
    for i in range(32, 16, -1):  # K.2 Adjust_BITS
        while bits[i] > 0:
            j = i - 2
            while bits[j] == 0:
                j -= 1
            bits[i] -= 2
            bits[i - 1] += 1
            bits[j + 1] += 2
            bits[j] -= 1
    i = 16
    while bits[i] == 0:
        i -= 1
    bits[i] -= 1  # drop the reserved symbol
    order = sorted(freq, key=lambda s: (size[s], s))
    return bits[1:17], order


def _codes(counts, symbols) -> dict[int, tuple[int, int]]:
    out, code, k = {}, 0, 0
    for length in range(1, 17):
        for _ in range(counts[length - 1]):
            out[symbols[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return out


class _Bits:
    def __init__(self):
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def put(self, value: int, length: int) -> None:
        self.acc = (self.acc << length) | (value & ((1 << length) - 1))
        self.n += length
        while self.n >= 8:
            self.n -= 8
            byte = (self.acc >> self.n) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0)
        self.acc &= (1 << self.n) - 1

    def flush(self) -> None:
        if self.n:
            self.put((1 << (8 - self.n)) - 1, 8 - self.n)


def _scan_units(comps, order, mcus):
    """Per MCU: the (component, (block row, block column)) in decoding order."""
    ns = len(order)
    if ns == 1:
        c = comps[order[0]]
        return [[(order[0], (by, bx))] for by in range(c.nby) for bx in range(c.nbx)]
    mx, my = mcus
    units = []
    for y in range(my):
        for x in range(mx):
            unit = []
            for ci in order:
                c = comps[ci]
                for by in range(c.v):
                    for bx in range(c.h):
                        unit.append((ci, (y * c.v + by, x * c.h + bx)))
            units.append(unit)
    return units


def write_jpeg(
    width: int,
    height: int,
    sampling: list[tuple[int, int]],
    qtables: list[np.ndarray],
    blocks: list[np.ndarray],
    *,
    idents: list[int] | None = None,
    tq: list[int] | None = None,
    interleaved: bool = True,
    restart_interval: int = 0,
    marker: str = "jfif",
    adobe_transform: int = 1,
) -> bytes:
    """A baseline JPEG of the given quantised coefficients.

    ``blocks[c]`` is int16[rows, stride, 64] (natural order) with the storage shape of
    ``parser.layout`` (MCU-padded); ``qtables[t]`` uint16[64] natural order, 8-bit if all
    values are below 256. ``marker`` is "jfif", "adobe" or "none".
    """
    comps = layout(width, height, sampling)
    n = len(comps)
    idents = idents or list(range(1, n + 1))
    tq = tq or [min(i, len(qtables) - 1) for i in range(n)]
    hmax = max(h for h, _ in sampling)
    vmax = max(v for _, v in sampling)
    mcus = (-(-width // (8 * hmax)), -(-height // (8 * vmax)))
    out = bytearray(b"\xff\xd8")
    if marker == "jfif":
        out += b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    elif marker == "adobe":
        out += b"\xff\xee" + struct.pack(">H", 14) + b"Adobe\x00\x64\x00\x00\x00\x00" + bytes([adobe_transform])
    for t, q in enumerate(qtables):
        q = np.asarray(q)
        wide = int(q.max() > 255)
        body = bytes([(wide << 4) | t]) + (q[ZIGZAG].astype(">u2" if wide else np.uint8)).tobytes()
        out += b"\xff\xdb" + struct.pack(">H", len(body) + 2) + body
    sof = bytes([8]) + struct.pack(">HH", height, width) + bytes([n])
    for i, (h, v) in enumerate(sampling):
        sof += bytes([idents[i], (h << 4) | v, tq[i]])
    out += b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof
    if restart_interval:
        out += b"\xff\xdd" + struct.pack(">HH", 4, restart_interval)
    scans = [list(range(n))] if interleaved else [[i] for i in range(n)]
    for order in scans:
        units = _scan_units(comps, order, mcus)
        # Pass 1: symbol statistics (DC table i and AC table i for scan position i).
        dc_freq = [dict() for _ in order]
        ac_freq = [dict() for _ in order]
        events = []
        pred = {ci: 0 for ci in order}
        for u, unit in enumerate(units):
            if restart_interval and u % restart_interval == 0:
                pred = {ci: 0 for ci in order}
                events.append(("rst", u // restart_interval - 1))
            for ci, (by, bx) in unit:
                slot = order.index(ci)
                zz = blocks[ci][by, bx][ZIGZAG].astype(np.int64)
                diff = int(zz[0]) - pred[ci]
                pred[ci] = int(zz[0])
                s = _category(diff)
                dc_freq[slot][s] = dc_freq[slot].get(s, 0) + 1
                events.append(("dc", slot, s, _bits_of(diff, s)))
                run = 0
                last = max([k for k in range(1, 64) if zz[k] != 0], default=0)
                for k in range(1, last + 1):
                    v = int(zz[k])
                    if v == 0:
                        run += 1
                        continue
                    while run > 15:
                        ac_freq[slot][0xF0] = ac_freq[slot].get(0xF0, 0) + 1
                        events.append(("ac", slot, 0xF0, 0, 0))
                        run -= 16
                    s = _category(v)
                    sym = (run << 4) | s
                    ac_freq[slot][sym] = ac_freq[slot].get(sym, 0) + 1
                    events.append(("ac", slot, sym, _bits_of(v, s), s))
                    run = 0
                if last < 63:
                    ac_freq[slot][0] = ac_freq[slot].get(0, 0) + 1
                    events.append(("ac", slot, 0, 0, 0))
        dht = b""
        dc_codes, ac_codes = [], []
        for slot in range(len(order)):
            counts, syms = _huffman_lengths(dc_freq[slot])
            dht += bytes([slot]) + bytes(counts) + bytes(syms)
            dc_codes.append(_codes(counts, syms))
            counts, syms = _huffman_lengths(ac_freq[slot])
            dht += bytes([0x10 | slot]) + bytes(counts) + bytes(syms)
            ac_codes.append(_codes(counts, syms))
        out += b"\xff\xc4" + struct.pack(">H", len(dht) + 2) + dht
        sos = bytes([len(order)])
        for slot, ci in enumerate(order):
            sos += bytes([idents[ci], (slot << 4) | slot])
        sos += bytes([0, 63, 0])
        out += b"\xff\xda" + struct.pack(">H", len(sos) + 2) + sos
        bits = _Bits()
        for ev in events:
            if ev[0] == "rst":
                if ev[1] >= 0:
                    bits.flush()
                    bits.out += bytes([0xFF, 0xD0 + (ev[1] & 7)])
                continue
            kind, slot, sym, val = ev[0], ev[1], ev[2], ev[3]
            code, length = (dc_codes if kind == "dc" else ac_codes)[slot][sym]
            bits.put(code, length)
            extra = sym if kind == "dc" else ev[4]
            if extra:
                bits.put(val, extra)
        bits.flush()
        out += bits.out
    out += b"\xff\xd9"
    return bytes(out)


def forward_dct(pixels: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Quantised coefficients int16[rows, cols, 64] of a plane whose size is a multiple of 8."""
    h, w = pixels.shape
    k = np.arange(8)
    basis = np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16) * np.where(k == 0, np.sqrt(1 / 8), 0.5)[:, None]
    tiles = pixels.reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3).astype(np.float64) - 128
    coef = np.einsum("ux,abxy,vy->abuv", basis, tiles, basis).reshape(h // 8, w // 8, 64)
    return np.round(coef / np.maximum(q, 1)).astype(np.int16)
