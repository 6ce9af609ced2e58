"""Self-checks of tests/spec_reader.py with PPAN files built by hand from spec/FORMAT.md.

Nothing here uses the project's encoder: a tiny writer following the spec is below.
"""

from __future__ import annotations

import io
import math
import struct
import sys
import zlib
from pathlib import Path

import brotli
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

import spec_reader as sr  # noqa: E402
from spec_reader import SpecError, read_ppan  # noqa: E402

# ---------------------------------------------------------------------------
# A minimal writer, from the spec
# ---------------------------------------------------------------------------

SIG = b"\x89PAN\r\n\x1a\n"


def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def chunk(ctype: bytes, body: bytes, crc: int | None = None) -> bytes:
    if crc is None:
        crc = zlib.crc32(ctype + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)


def head(channels, W, H, s=1, F=0, version=1, reserved=0) -> bytes:
    return struct.pack(">BBIIBBH", version, channels, W, H, s, F, reserved)


def webp(arr: np.ndarray, channels: int) -> bytes:
    """Lossless WebP of an (h, w, C) array; L is stored as RGB with R=G=B."""
    if channels == 1:
        im = Image.fromarray(np.repeat(arr[:, :, :1], 3, axis=2), "RGB")
    elif channels == 3:
        im = Image.fromarray(arr[:, :, :3], "RGB")
    else:
        im = Image.fromarray(arr, "RGBA")
    buf = io.BytesIO()
    im.save(buf, "WEBP", lossless=True, exact=True)
    return buf.getvalue()


def bgnd(B: np.ndarray, channels: int) -> bytes:
    bh, bw = B.shape[:2]
    return struct.pack(">BII", 1, bw, bh) + webp(B, channels)


def mask_runs(M: np.ndarray) -> bytes:
    out = bytearray()
    for row in M:
        runs, cur, n = [], 0, 0  # start with a background run
        for v in row:
            if v == cur:
                n += 1
            else:
                runs.append(n)
                cur, n = v, 1
        runs.append(n)
        for r in runs:
            out += varint(r)
    return bytes(out)


def mask_chunk_body(M: np.ndarray = None, runs: bytes = None) -> bytes:
    if runs is None:
        runs = mask_runs(M)
    return b"\x01" + brotli.compress(runs)


def box_of(M):
    ys, xs = np.nonzero(M)
    if len(xs) == 0:
        return (0, 0, 0, 0)
    return (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))


def med(a, b, c):
    if c >= max(a, b):
        return min(a, b)
    if c <= min(a, b):
        return max(a, b)
    return a + b - c


def zigzag(e):
    return 2 * e if e >= 0 else -2 * e - 1


def residuals_coding2(S: np.ndarray, M: np.ndarray, channels: int) -> bytes:
    """Encoder view of §6.2 (written independently from the reader)."""
    x0, y0, bws, bhs = box_of(M)
    box = S[y0 : y0 + bhs, x0 : x0 + bws].astype(int)
    mb = M[y0 : y0 + bhs, x0 : x0 + bws]
    if channels == 1:
        planes = [box[:, :, 0]]
    else:
        g = box[:, :, 1]
        planes = [g, (box[:, :, 0] - g) % 256, (box[:, :, 2] - g) % 256]
        if channels == 4:
            planes.append(box[:, :, 3])
    out = bytearray()
    for P in planes:
        rec = np.zeros((bhs, bws), int)
        for j in range(bhs):
            for i in range(bws):
                if i == 0 and j == 0:
                    pred = 0
                elif j == 0:
                    pred = rec[j, i - 1]
                elif i == 0:
                    pred = rec[j - 1, i]
                else:
                    pred = med(rec[j, i - 1], rec[j - 1, i], rec[j - 1, i - 1])
                if mb[j, i]:
                    e = (int(P[j, i]) - pred) % 256
                    if e >= 128:
                        e -= 256
                    out.append(zigzag(e))
                    rec[j, i] = P[j, i]
                else:
                    rec[j, i] = pred
    return bytes(out)


def subj2(S, M, channels, residuals: bytes = None, box=None) -> bytes:
    if residuals is None:
        residuals = residuals_coding2(S, M, channels)
    box = box or box_of(M)
    return struct.pack(">BIIII", 2, *box) + brotli.compress(residuals)


def subj1(S, M, channels) -> bytes:
    x0, y0, bws, bhs = box_of(M)
    crop = S[y0 : y0 + bhs, x0 : x0 + bws].copy()
    crop[M[y0 : y0 + bhs, x0 : x0 + bws] == 0] = 0  # §12: box background filled with zeros
    return struct.pack(">BIIII", 1, x0, y0, bws, bhs) + webp(crop, channels)


def subj0() -> bytes:
    return struct.pack(">BIIII", 0, 0, 0, 0, 0)


def build(channels, S, M, B, s=1, F=0, subj=None, extra_before_done=b"", extra_after_head=b""):
    H, W = M.shape
    if subj is None:
        subj = subj2(S, M, channels) if M.any() else subj0()
    return (
        SIG
        + chunk(b"HEAD", head(channels, W, H, s, F))
        + extra_after_head
        + chunk(b"BGND", bgnd(B, channels))
        + chunk(b"MASK", mask_chunk_body(M))
        + chunk(b"SUBJ", subj)
        + extra_before_done
        + chunk(b"DONE", b"")
    )


def sample(channels, W=13, H=9, seed=0):
    """Random subject S, a blobby mask M with holes, and a background B (scale 1)."""
    rng = np.random.default_rng(seed)
    S = rng.integers(0, 256, (H, W, channels), dtype=np.uint8)
    B = rng.integers(0, 256, (H, W, channels), dtype=np.uint8)
    if channels == 4:
        B[0, 0, 3] = 7  # keep real transparency so the WebP keeps its alpha
        S[:, :, 3] = rng.integers(0, 256, (H, W))
    yy, xx = np.mgrid[0:H, 0:W]
    M = (((xx - 6) ** 2 + (yy - 4) ** 2) <= 12).astype(np.uint8)
    M[4, 6] = 0  # a hole
    M[0, W - 1] = 1  # an isolated pixel touching the edge
    return S, M, B


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------


def test_crc_is_the_spec_crc():
    assert sr.crc32_spec(b"123456789") == 0xCBF43926
    for data in (b"", b"HEAD", bytes(range(200))):
        assert sr.crc32_spec(data) == zlib.crc32(data)


def test_weight_table_parsed_and_matches_formula():
    assert len(sr.WEIGHTS) == sum(range(1, 9))
    assert sr.WEIGHTS == sr.compute_weight_table()
    assert sr.WEIGHTS[(8, 0)] == (-2, (-220, 1950, 2649, -283))
    assert sr.WEIGHTS[(1, 0)] == (-1, (0, 4096, 0, 0))


def test_varint_rules():
    assert sr.read_varint(varint(0), 0) == (0, 1)
    assert sr.read_varint(varint(300), 0) == (300, 2)
    assert sr.read_varint(varint(2**32 - 1), 0) == (2**32 - 1, 5)
    with pytest.raises(SpecError):
        sr.read_varint(b"\x80\x80\x80\x80\x80\x01", 0)  # 6 bytes
    with pytest.raises(SpecError):
        sr.read_varint(b"\x80\x80\x80\x80\x10", 0)  # 2^32
    with pytest.raises(SpecError):
        sr.read_varint(b"\x80", 0)  # truncated
    with pytest.raises(SpecError):
        sr.read_varint(b"\x80\x00", 0)  # not canonical


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("coding", [1, 2])
def test_roundtrip_subject_and_background(channels, coding):
    S, M, B = sample(channels, seed=channels * 10 + coding)
    subj = subj2(S, M, channels) if coding == 2 else subj1(S, M, channels)
    img = read_ppan(build(channels, S, M, B, subj=subj))
    assert img.mode == {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    assert (img.width, img.height, img.scale, img.feather) == (13, 9, 1, 0)
    assert img.chunks == ["HEAD", "BGND", "MASK", "SUBJ", "DONE"]
    np.testing.assert_array_equal(img.mask, M)
    np.testing.assert_array_equal(img.background, B)
    assert img.pixels.shape == (9, 13, channels)
    np.testing.assert_array_equal(img.pixels[M == 1], S[M == 1])
    np.testing.assert_array_equal(img.pixels[M == 0], B[M == 0])


def test_empty_mask_coding0():
    S, M, B = sample(3)
    M[:] = 0
    img = read_ppan(build(3, S, M, B, F=4))
    np.testing.assert_array_equal(img.pixels, B)


def test_full_mask_and_zero_first_run():
    rng = np.random.default_rng(5)
    S = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    B = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    M = np.ones((3, 5), np.uint8)
    img = read_ppan(build(3, S, M, B, F=2))
    np.testing.assert_array_equal(img.pixels, S)


def test_grey_background_uses_spec_luma():
    # channels = 1 with a non-grey RGB WebP: L is the §4 luma of the decoded RGB.
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 30]]], np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "WEBP", lossless=True)
    M = np.zeros((1, 4), np.uint8)
    data = (
        SIG
        + chunk(b"HEAD", head(1, 4, 1))
        + chunk(b"BGND", struct.pack(">BII", 1, 4, 1) + buf.getvalue())
        + chunk(b"MASK", mask_chunk_body(M))
        + chunk(b"SUBJ", subj0())
        + chunk(b"DONE", b"")
    )
    img = read_ppan(data)
    expect = [(19595 * r + 38470 * g + 7471 * b + 32768) >> 16 for r, g, b in rgb[0].tolist()]
    assert img.background[0, :, 0].tolist() == expect
    assert expect == np.asarray(Image.fromarray(rgb, "RGB").convert("L"))[0].tolist()


def keys_float(d):
    d = abs(d)
    if d <= 1:
        return 1.5 * d**3 - 2.5 * d**2 + 1
    if d < 2:
        return -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2
    return 0.0


def float_bicubic(B, W, H, s):
    bh, bw = B.shape[:2]

    def taps(n, size):
        u = (n + 0.5) / s - 0.5
        base = math.floor(u)
        return [(min(max(base + t, 0), size - 1), keys_float(u - (base + t))) for t in range(-1, 3)]

    out = np.zeros((H, W, B.shape[2]))
    for y in range(H):
        for x in range(W):
            acc = 0.0
            for ry, wy in taps(y, bh):
                for rx, wx in taps(x, bw):
                    acc = acc + wy * wx * B[ry, rx].astype(float)
            out[y, x] = acc
    return np.clip(out, 0, 255)


@pytest.mark.parametrize("s", [2, 3, 8])
def test_upsampling_close_to_float_bicubic(s):
    W, H = 2 * s + 3, s + 2
    bw, bh = -(-W // s), -(-H // s)
    rng = np.random.default_rng(s)
    B = rng.integers(0, 256, (bh, bw, 3), dtype=np.uint8)
    M = np.zeros((H, W), np.uint8)
    data = (
        SIG
        + chunk(b"HEAD", head(3, W, H, s, 0))
        + chunk(b"BGND", bgnd(B, 3))
        + chunk(b"MASK", mask_chunk_body(M))
        + chunk(b"SUBJ", subj0())
        + chunk(b"DONE", b"")
    )
    img = read_ppan(data)
    assert img.pixels.shape == (H, W, 3)
    ref = float_bicubic(B, W, H, s)
    assert np.abs(img.pixels.astype(float) - ref).max() <= 1.0


def test_upsampling_constant_stays_constant():
    B = np.full((2, 2, 3), 77, np.uint8)
    U = sr.upsample(B, 11, 9, 6)
    assert (U == 77).all()


def test_feathering_hand_computed():
    # W=5, H=1, F=1 -> R=6; subject at x=0.  Pixel x=1: D=3, w=3.
    for sval, bval, expect1 in ((200, 100, 150), (0, 100, 50)):
        # e=+100: floor((600+6)/12)=50 ; e=-100: floor((-600+6)/12)=floor(-49.5)=-50
        S = np.full((1, 5, 3), sval, np.uint8)
        B = np.full((1, 5, 3), bval, np.uint8)
        M = np.array([[1, 0, 0, 0, 0]], np.uint8)
        img = read_ppan(build(3, S, M, B, F=1))
        assert img.pixels[0, :, 0].tolist() == [sval, expect1, bval, bval, bval]


def test_feathering_diagonal_and_source():
    # One subject pixel in the middle of 5x5, F=1: R=6, orthogonal D=3 (w=3),
    # diagonal D=4 (w=2).  e=60: ortho floor((360+6)/12)=30, diag floor((240+6)/12)=20.
    S = np.full((5, 5, 1), 160, np.uint8)
    B = np.full((5, 5, 1), 100, np.uint8)
    M = np.zeros((5, 5), np.uint8)
    M[2, 2] = 1
    img = read_ppan(build(1, S, M, B, F=1))
    expect = np.full((5, 5), 100)
    expect[2, 2] = 160
    expect[1, 2] = expect[3, 2] = expect[2, 1] = expect[2, 3] = 130
    expect[1, 1] = expect[1, 3] = expect[3, 1] = expect[3, 3] = 120
    np.testing.assert_array_equal(img.pixels[:, :, 0], expect)


def test_feathering_clamps():
    S = np.full((1, 3, 1), 255, np.uint8)
    B = np.full((1, 3, 1), 250, np.uint8)
    B[0, 0] = 0  # U(q) = 0 -> e = 255
    M = np.array([[1, 0, 0]], np.uint8)
    img = read_ppan(build(1, S, M, B, F=2))
    assert img.pixels[0, :, 0].tolist() == [255, 255, 255]


# ---------------------------------------------------------------------------
# Ancillary chunks
# ---------------------------------------------------------------------------


def test_metadata_and_unknown_ancillary():
    S, M, B = sample(3)
    exif = b"II*\x00" + b"\x08\x00\x00\x00" + b"rest"
    xmp = "<x:xmpmeta>é</x:xmpmeta>".encode()
    extra = (
        chunk(b"exif", b"\x00" + exif)
        + chunk(b"zzzz", b"whatever, skipped")
        + chunk(b"exif", b"\x00II*\x00second")  # a second copy is skipped
        + chunk(b"xmpd", b"\x01" + brotli.compress(xmp))
    )
    late = chunk(b"iccp", b"\x00a profile after the layers")  # after BGND: skipped
    data = build(3, S, M, B, extra_after_head=extra, extra_before_done=late)
    img = read_ppan(data + b"trailing garbage after DONE")
    assert img.metadata == {"exif": exif, "xmpd": xmp}
    assert img.chunks == ["HEAD", "exif", "zzzz", "exif", "xmpd", "BGND", "MASK", "SUBJ", "iccp", "DONE"]


@pytest.mark.parametrize("chunk_type, payload", [
    (b"iccp", b"\x07junk"),  # §9: method 0 or 1
    (b"exif", b"\x00JFIF\x00\x01 not a TIFF structure"),  # §9: starts II*\0 or MM\0*
    (b"xmpd", b"\x00<x:xmpmeta>\xff\xfe</x:xmpmeta>"),  # §9: UTF-8
])
def test_malformed_metadata_is_skipped_and_counts_as_the_first_copy(chunk_type, payload):
    S, M, B = sample(3)
    value = {b"iccp": b"icc", b"exif": b"MM\x00*\x00\x00\x00\x08", b"xmpd": b"<x/>"}[chunk_type]
    second = chunk(chunk_type, b"\x00" + value)
    img = read_ppan(build(3, S, M, B, extra_after_head=chunk(chunk_type, payload) + second))
    assert img.metadata == {}


def test_ancillary_bad_crc_is_rejected():
    S, M, B = sample(3)
    with pytest.raises(SpecError):
        read_ppan(build(3, S, M, B, extra_after_head=chunk(b"zzzz", b"x", crc=0)))


# ---------------------------------------------------------------------------
# Rejections
# ---------------------------------------------------------------------------


def parts(channels=3, seed=1):
    S, M, B = sample(channels, seed=seed)
    H, W = M.shape
    return {
        "HEAD": head(channels, W, H),
        "BGND": bgnd(B, channels),
        "MASK": mask_chunk_body(M),
        "SUBJ": subj2(S, M, channels),
        "DONE": b"",
    }, (S, M, B)


def assemble(p, order=("HEAD", "BGND", "MASK", "SUBJ", "DONE")):
    return SIG + b"".join(chunk(t.encode(), p[t]) for t in order)


def test_valid_parts_decode():
    p, _ = parts()
    read_ppan(assemble(p))


def test_bad_signature():
    p, _ = parts()
    data = assemble(p)
    for bad in (b"\x89PNG\r\n\x1a\n" + data[8:], data[:7], b"\x89PAN\n\n\x1a\n" + data[8:]):
        with pytest.raises(SpecError):
            read_ppan(bad)


def test_bad_crc():
    p, _ = parts()
    data = bytearray(assemble(p))
    data[8 + 8 + 3] ^= 1  # a HEAD data byte
    with pytest.raises(SpecError):
        read_ppan(bytes(data))


def test_unknown_critical_chunk():
    p, _ = parts()
    data = assemble(p)
    i = data.index(b"MASK") - 4
    with pytest.raises(SpecError):
        read_ppan(data[:i] + chunk(b"ZZZZ", b"") + data[i:])
    with pytest.raises(SpecError):
        read_ppan(data[:i] + chunk(b"Exif", b"\x00II*\x00") + data[i:])  # critical by case


def test_non_letter_type_and_huge_length():
    p, _ = parts()
    data = assemble(p)
    i = data.index(b"MASK") - 4
    with pytest.raises(SpecError):
        read_ppan(data[:i] + chunk(b"zz1z", b"") + data[i:])
    with pytest.raises(SpecError):
        read_ppan(data[:i] + struct.pack(">I", 2**30 + 1) + b"zzzz" + data[i:])


@pytest.mark.parametrize(
    "order",
    [
        ("HEAD", "MASK", "BGND", "SUBJ", "DONE"),
        ("BGND", "HEAD", "MASK", "SUBJ", "DONE"),
        ("HEAD", "BGND", "MASK", "MASK", "SUBJ", "DONE"),
        ("HEAD", "BGND", "SUBJ", "DONE"),
        ("HEAD", "BGND", "MASK", "SUBJ"),  # truncated: no DONE
        ("HEAD", "BGND", "MASK", "SUBJ", "HEAD", "DONE"),
    ],
)
def test_chunk_order(order):
    p, _ = parts()
    with pytest.raises(SpecError):
        read_ppan(assemble(p, order))


def test_ancillary_before_head_rejected():
    p, _ = parts()
    data = assemble(p)
    with pytest.raises(SpecError):
        read_ppan(SIG + chunk(b"zzzz", b"") + data[8:])


def test_truncated_chunk():
    p, _ = parts()
    data = assemble(p)
    with pytest.raises(SpecError):
        read_ppan(data[:-3])


def test_non_empty_done():
    p, _ = parts()
    p["DONE"] = b"\x00"
    with pytest.raises(SpecError):
        read_ppan(assemble(p))


@pytest.mark.parametrize(
    "kw",
    [
        dict(version=2),
        dict(channels=2),
        dict(W=0),
        dict(W=65536),
        dict(H=0),
        dict(s=0),
        dict(s=9),
        dict(F=33),
        dict(reserved=1),
    ],
)
def test_header_out_of_range(kw):
    p, (S, M, B) = parts()
    args = dict(channels=3, W=M.shape[1], H=M.shape[0], s=1, F=0)
    args.update(kw)
    p["HEAD"] = head(**args)
    with pytest.raises(SpecError):
        read_ppan(assemble(p))


def test_header_wrong_length():
    p, _ = parts()
    p["HEAD"] = p["HEAD"] + b"\x00"
    with pytest.raises(SpecError):
        read_ppan(assemble(p))


def test_bgnd_rules():
    p, (S, M, B) = parts()
    good = p["BGND"]
    for bad in (
        b"\x02" + good[1:],  # coding
        good[:1] + struct.pack(">II", 14, 9) + good[9:],  # size field
        good[:9] + good[9:] + b"\x00\x00",  # trailing bytes after the RIFF
        bgnd(B[:, :-1], 3),  # canvas (and fields) of the wrong size
        good[:9] + bgnd(B[:, :-1], 3)[9:],  # canvas only
        bgnd(np.dstack([B, np.full(B.shape[:2], 9, np.uint8)]), 4),  # alpha with channels 3
    ):
        p["BGND"] = bad
        with pytest.raises(SpecError):
            read_ppan(assemble(p))


def test_bgnd_animation_flag_rejected():
    # An extended-format WebP (VP8X) whose animation flag is set, around a still VP8L image.
    p, (S, M, B) = parts()
    still = bgnd(B, 3)[9:]
    H, W = B.shape[:2]
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x02, 0, 0, 0]) + (W - 1).to_bytes(3, "little")
    vp8x += (H - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + still[12:]
    p["BGND"] = struct.pack(">BII", 1, W, H) + b"RIFF" + struct.pack("<I", len(body)) + body
    with pytest.raises(SpecError):
        read_ppan(assemble(p))
    flags_ok = bytearray(p["BGND"])
    flags_ok[9 + 20] = 0  # the same file without the flag is valid
    p["BGND"] = bytes(flags_ok)
    read_ppan(assemble(p))


def test_opaque_rgba_background_without_alpha_reads_as_alpha_255():
    # §4: a WebP without alpha in a 4-channel file has A = 255 (libwebp drops opaque alpha).
    S, M, B = sample(4)
    B[:, :, 3] = 255
    img = read_ppan(build(4, S, M, B))
    np.testing.assert_array_equal(img.background, B)


def mask_parts_with_runs(runs: bytes):
    p, _ = parts()
    p["MASK"] = b"\x01" + brotli.compress(runs)
    return p


@pytest.mark.parametrize(
    "rows",
    [
        [[5, 9]],  # run past the row end (W = 13)
        [[14]],  # run past the row end
        [[3, 0, 10]],  # zero run that is not first
        [[13]] * 8,  # missing row (H = 9)
        [[13]] * 9 + [[1]],  # trailing data
        [[13]] * 8 + [[4, 4]],  # the last row does not reach W before the stream ends
    ],
)
def test_mask_rules(rows):
    runs = b"".join(varint(r) for row in rows for r in row)
    if len(rows) == 1:  # complete the other rows validly
        runs += varint(13) * 8
    p = mask_parts_with_runs(runs)
    with pytest.raises(SpecError):
        read_ppan(assemble(p))


def test_mask_trailing_bytes_and_overlong_varint():
    with pytest.raises(SpecError):
        read_ppan(assemble(mask_parts_with_runs(varint(13) * 9 + b"\x00")))
    with pytest.raises(SpecError):
        read_ppan(assemble(mask_parts_with_runs(b"\x8d\x80\x80\x80\x80\x00" + varint(13) * 8)))


def test_mask_runs_over_cap():
    # H*(W+1) = 9*14 = 126 bytes; 127 bytes of decompressed runs are rejected.
    p, _ = parts()
    p["MASK"] = b"\x01" + brotli.compress(b"\x01" * 127)
    with pytest.raises(SpecError):
        read_ppan(assemble(p))
    p["MASK"] = b"\x01" + brotli.compress(b"\x00" * 10**6)
    with pytest.raises(SpecError):
        read_ppan(assemble(p))


def test_mask_bad_coding_and_bad_brotli():
    p, _ = parts()
    good = p["MASK"]
    for bad in (b"\x00" + good[1:], good[:-1], good + b"\x00", b"\x01"):
        p["MASK"] = bad
        with pytest.raises(SpecError):
            read_ppan(assemble(p))


def test_subj_residual_length_mismatch():
    p, (S, M, B) = parts()
    r = residuals_coding2(S, M, 3)
    for bad in (r[:-1], r + b"\x00", b""):
        p["SUBJ"] = subj2(S, M, 3, residuals=bad)
        with pytest.raises(SpecError):
            read_ppan(assemble(p))


def test_subj_box_and_coding_rules():
    p, (S, M, B) = parts()
    x0, y0, w, h = box_of(M)
    r = residuals_coding2(S, M, 3)
    bads = [
        subj2(S, M, 3, residuals=r, box=(x0, y0, w + 1, h)),
        subj2(S, M, 3, residuals=r, box=(x0 + 1, y0, w, h)),
        subj0(),  # coding 0 with n > 0
        b"\x05" + subj2(S, M, 3)[1:],  # unknown coding (0 … 4 are defined)
        subj2(S, M, 3)[:16],  # too short
    ]
    for bad in bads:
        p["SUBJ"] = bad
        with pytest.raises(SpecError):
            read_ppan(assemble(p))


def test_subj_rules_with_empty_mask():
    p, (S, M, B) = parts()
    M0 = np.zeros_like(M)
    p["MASK"] = mask_chunk_body(M0)
    for bad in (
        subj0() + b"\x00",  # coding 0 with a payload
        struct.pack(">BIIII", 0, 1, 0, 0, 0),  # coding 0 with a non-empty box
        struct.pack(">BIIII", 2, 0, 0, 0, 0) + brotli.compress(b""),  # coding 2 with n = 0
    ):
        p["SUBJ"] = bad
        with pytest.raises(SpecError):
            read_ppan(assemble(p))
    p["SUBJ"] = subj0()
    read_ppan(assemble(p))


def test_subj_coding1_rules():
    p, (S, M, B) = parts()
    good = subj1(S, M, 3)
    x0, y0, w, h = box_of(M)
    lossy = io.BytesIO()
    Image.fromarray(S[y0 : y0 + h, x0 : x0 + w], "RGB").save(lossy, "WEBP", quality=90)
    for bad in (
        good[:17] + good[17:] + b"\x00\x00",  # trailing bytes
        struct.pack(">BIIII", 1, x0, y0, w, h) + lossy.getvalue(),  # VP8, not VP8L
        struct.pack(">BIIII", 1, x0, y0, w, h) + webp(S[y0 : y0 + h, x0 : x0 + w - 1], 3),  # size
    ):
        p["SUBJ"] = bad
        with pytest.raises(SpecError):
            read_ppan(assemble(p))


def test_opaque_rgba_subject_coding1_without_alpha_reads_as_alpha_255():
    # §6.1: a 4-channel box may be an RGB WebP, read with A = 255.
    rng = np.random.default_rng(3)
    S = rng.integers(0, 256, (4, 6, 4), dtype=np.uint8)
    S[:, :, 3] = 255
    B = rng.integers(0, 256, (4, 6, 4), dtype=np.uint8)
    M = np.ones((4, 6), np.uint8)
    data = build(4, S, M, B, subj=subj1(S, M, 4))
    np.testing.assert_array_equal(read_ppan(data).pixels, S)


def test_scaled_feathered_rgba_runs():
    S, M, B0 = sample(4, seed=9)
    s, F = 3, 2
    H, W = M.shape
    B = B0[::s, ::s].copy()
    assert B.shape[:2] == (-(-H // s), -(-W // s))
    img = read_ppan(build(4, S, M, B, s=s, F=F))
    np.testing.assert_array_equal(img.pixels[M == 1], S[M == 1])
    U = sr.upsample(B, W, H, s)
    far = np.ones_like(M, bool)
    for y, x in zip(*np.nonzero(M)):
        far[max(0, y - F) : y + F + 1, max(0, x - F) : x + F + 1] = False
    np.testing.assert_array_equal(img.pixels[far], U[far])


# ---------------------------------------------------------------------------
# §6.3 Coding 3: a spec-based encoder (the "encoder view" of §6.3), round-tripped
# ---------------------------------------------------------------------------


class LzmaRangeEncoder:
    """§6.3 informative encoder: 33-bit low, range, a cache byte and a pending count."""

    def __init__(self):
        self.low = 0
        self.range = 0xFFFFFFFF
        self.cache = 0
        self.cache_size = 1
        self.out = bytearray()

    def _shift_low(self):
        if self.low < 0xFF000000 or self.low >= 1 << 32:
            carry = self.low >> 32
            temp = self.cache
            while True:
                self.out.append((temp + carry) & 0xFF)
                temp = 0xFF
                self.cache_size -= 1
                if self.cache_size == 0:
                    break
            self.cache = (self.low >> 24) & 0xFF
        self.cache_size += 1
        self.low = (self.low & 0x00FFFFFF) << 8

    def _norm(self):
        while self.range < 1 << 24:
            self.range <<= 8
            self._shift_low()

    def bit(self, prob, b):
        P, n = prob
        sh = min(6, int(math.floor(math.log2(n + 4))))
        bound = (self.range >> 12) * P
        if b == 0:
            self.range = bound
            P += (4096 - P) >> sh
        else:
            self.low += bound
            self.range -= bound
            P -= P >> sh
        prob[0], prob[1] = P, min(n + 1, 60)
        self._norm()

    def direct(self, b):
        self.range >>= 1
        if b:
            self.low += self.range
        self._norm()

    def finish(self) -> bytes:
        for _ in range(5):
            self._shift_low()
        assert self.out[0] == 0  # "drops its first output byte, which is always 0"
        return bytes(self.out[1:])


def sgn3(x):
    return 0 if x == 0 else 1 if x > 0 else 2


def encode_coding3(S, M, channels, rng=None, max_error=0) -> bytes:
    """Payload of §6.3 for the subject values S over the mask box.

    With `rng`, a residual e is sometimes written as e ± 256 (still 1 <= |e| <= 255):
    the decoded value (pred + e) mod 256 is the same, which checks that a decoder takes
    m up to 255 and keeps E unreduced in its contexts.

    With max_error = N >= 1 it is the stream of §6.5 (coding 5, without the u8 N), from
    §6.5's "Encoder view": colour planes are R − G' and B − G' with G' the reconstructed G,
    e = sign(d)·floor((|d| + N) / step), reconstruction clamped.  With `rng` there, a
    residual whose reconstruction is clamped is sometimes pushed further out (up to ±255
    steps): the clamp gives the same value, which checks the clamp and the wide e.
    """
    near = max_error > 0
    step = 2 * max_error + 1
    x0, y0, bws, bhs = box_of(M)
    box = S[y0 : y0 + bhs, x0 : x0 + bws].astype(int)
    mb = M[y0 : y0 + bhs, x0 : x0 + bws]
    if channels == 1:
        planes = [box[:, :, 0]]
    elif near:
        planes = [box[:, :, 1], box[:, :, 0], box[:, :, 2]]  # G, R, B: R − G', B − G' below
        if channels == 4:
            planes.append(box[:, :, 3])
    else:
        g = box[:, :, 1]
        planes = [g, (box[:, :, 0] - g + 128) % 256, (box[:, :, 2] - g + 128) % 256]
        if channels == 4:
            planes.append(box[:, :, 3])
    Z = [[[[2048, 0] for _ in range(15)] for _ in range(108)] for _ in range(channels)]
    SG = [[[2048, 0] for _ in range(81)] for _ in range(channels)]
    V = np.zeros((channels, bhs + 1, bws + 2), int)  # padded: V[p, j+1, i+1]
    E = np.zeros((channels, bhs + 1, bws + 2), int)  # E = 0 outside the box
    enc = LzmaRangeEncoder()
    thresholds = (3, 7, 13, 22, 36, 60, 100, 170)
    clamp = lambda x: min(max(x, 0), 255)  # noqa: E731
    for j in range(bhs):
        for i in range(bws):
            for p in range(channels):
                v = lambda di, dj: int(V[p, j + 1 + dj, i + 1 + di])  # noqa: E731
                e_ = lambda di, dj: int(E[p, j + 1 + dj, i + 1 + di])  # noqa: E731
                if j == 0:
                    w_ = v(-1, 0) if i > 0 else 0
                    n_ = nw = ne = w_
                else:
                    n_ = v(0, -1)
                    w_ = v(-1, 0) if i > 0 else n_
                    nw = v(-1, -1) if i > 0 else n_
                    ne = v(1, -1) if i < bws - 1 else n_
                pred = med(w_, n_, nw)
                colour = channels > 1 and p in (1, 2)
                g_rec = int(V[0, j + 1, i + 1])  # G' (P0 comes first at each pixel)

                def recon(e):
                    if not near:
                        return (pred + e) % 256
                    if colour:
                        return clamp(g_rec + pred + e * step) - g_rec
                    return clamp(pred + e * step)

                if not mb[j, i]:
                    V[p, j + 1, i + 1] = recon(0)
                    continue
                eW, eN, eNW, eNE = e_(-1, 0), e_(0, -1), e_(-1, -1), e_(1, -1)
                grad = abs(w_ - nw) + abs(n_ - nw) + abs(n_ - ne)
                if near:
                    grad //= step
                act = grad + abs(eW) + abs(eN) + abs(eNW) + abs(eNE)
                q = sum(act >= t for t in thresholds)
                t = ((w_ == nw) + 2 * (n_ == nw)) if colour else 0
                u = sgn3(int(E[1, j + 1, i + 1])) if channels > 1 and p == 2 else 0
                ctx = q + 9 * (t + 4 * u)
                sctx = 3 * sgn3(eW) + sgn3(eN) + 9 * sgn3(eNE + eNW) + 27 * u
                if near:
                    src = int(planes[p][j, i]) - (g_rec if colour else 0)
                    d = src - pred
                    e = (1 if d > 0 else -1 if d < 0 else 0) * ((abs(d) + max_error) // step)
                    assert abs(pred + e * step - src) <= max_error and abs(e) <= 170
                    if rng is not None and e != 0 and rng.random() < 0.5:
                        alt = e + (1 if e > 0 else -1) * int(rng.integers(1, 256 - abs(e)))
                        if abs(alt) <= 255 and recon(alt) == recon(e):
                            e = alt
                else:
                    e = ((int(planes[p][j, i]) - pred + 128) % 256) - 128
                    if rng is not None and e != 0 and rng.random() < 0.3:
                        alt = e - 256 if e > 0 else e + 256
                        if 1 <= abs(alt) <= 255:
                            e = alt
                zs = Z[p][ctx]
                enc.bit(zs[0], int(e != 0))
                if e != 0:
                    m = abs(e)
                    enc.bit(SG[p][sctx], int(e < 0))
                    x = m.bit_length() - 1
                    for k in range(x):
                        enc.bit(zs[1 + k], 1)
                    if x < 7:
                        enc.bit(zs[1 + x], 0)
                    if x >= 1:
                        enc.bit(zs[7 + x], (m >> (x - 1)) & 1)
                        for k in range(x - 2, -1, -1):
                            enc.direct((m >> k) & 1)
                V[p, j + 1, i + 1] = recon(e)
                E[p, j + 1, i + 1] = e
    return enc.finish()


def subj3(S, M, channels, payload: bytes = None, rng=None) -> bytes:
    if payload is None:
        payload = encode_coding3(S, M, channels, rng)
    return struct.pack(">BIIII", 3, *box_of(M)) + payload


def smooth_sample(channels, W, H, seed):
    """A smooth subject (small residuals, flat colour planes) with noise in places."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    S = np.zeros((H, W, channels), np.uint8)
    for ch in range(channels):
        base = (xx * (3 + ch) + yy * (5 - ch) + 40 * ch) % 256
        noise = rng.integers(-2, 3, (H, W)) * (rng.random((H, W)) < 0.5)
        S[:, :, ch] = (base + noise) % 256
    S[H // 2 :, : W // 2] = rng.integers(0, 256, (H - H // 2, W // 2, channels))  # a noisy corner
    M = (rng.random((H, W)) < 0.8).astype(np.uint8)
    B = rng.integers(0, 256, (H, W, channels), dtype=np.uint8)
    if channels == 4:
        B[0, 0, 3] = 7
    return S, M, B


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("kind", ["random", "smooth", "wide-residuals"])
def test_roundtrip_coding3(channels, kind):
    if kind == "smooth":
        S, M, B = smooth_sample(channels, 21, 14, seed=channels)
    else:
        S, M, B = sample(channels, seed=channels * 10 + 3)
    rng = np.random.default_rng(channels) if kind == "wide-residuals" else None
    img = read_ppan(build(channels, S, M, B, subj=subj3(S, M, channels, rng=rng)))
    np.testing.assert_array_equal(img.mask, M)
    np.testing.assert_array_equal(img.pixels[M == 1], S[M == 1])
    np.testing.assert_array_equal(img.pixels[M == 0], B[M == 0])


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (2, 2)])
def test_coding3_thin_boxes(shape):
    # Boxes of one row / one column exercise the j = 0 and i = 0 / i = width-1 rules.
    H, W = shape
    rng = np.random.default_rng(H * 31 + W)
    S = rng.integers(0, 256, (H + 2, W + 2, 3), dtype=np.uint8)
    B = rng.integers(0, 256, (H + 2, W + 2, 3), dtype=np.uint8)
    M = np.zeros((H + 2, W + 2), np.uint8)
    M[1 : H + 1, 1 : W + 1] = 1
    img = read_ppan(build(3, S, M, B, subj=subj3(S, M, 3, rng=rng)))
    np.testing.assert_array_equal(img.pixels[M == 1], S[M == 1])


def test_coding3_constant_subject_is_tiny():
    S = np.full((16, 16, 3), 77, np.uint8)
    M = np.ones((16, 16), np.uint8)
    B = np.zeros_like(S)
    payload = encode_coding3(S, M, 3)
    assert len(payload) < 20
    np.testing.assert_array_equal(read_ppan(build(3, S, M, B, subj=subj3(S, M, 3, payload))).pixels, S)


def test_coding3_payload_rules():
    p, (S, M, B) = parts()
    good = encode_coding3(S, M, 3)
    p["SUBJ"] = subj3(S, M, 3, good)
    read_ppan(assemble(p))
    for bad in (good[:-1], good + b"\x00", good[:3], b""):  # short, trailing, too short to start
        p["SUBJ"] = subj3(S, M, 3, bad)
        with pytest.raises(SpecError):
            read_ppan(assemble(p))
    x0, y0, w, h = box_of(M)
    p["SUBJ"] = struct.pack(">BIIII", 3, x0, y0, w + 1, h) + good  # box != mask box
    with pytest.raises(SpecError):
        read_ppan(assemble(p))
    p["MASK"] = mask_chunk_body(np.zeros_like(M))
    p["SUBJ"] = struct.pack(">BIIII", 3, 0, 0, 0, 0)  # coding 3 with n = 0
    with pytest.raises(SpecError):
        read_ppan(assemble(p))


def test_range_decoder_bits_by_hand():
    # One probability-coded 0 then 1, then direct bits 1, 0, with the §6.3 encoder,
    # decoded by the reader's RangeDecoder; the probability follows the §6.3 update.
    enc = LzmaRangeEncoder()
    pe = [2048, 0]
    for b in (0, 1, 1, 0, 0):
        enc.bit(pe, b)
    enc.direct(1)
    enc.direct(0)
    data = enc.finish()
    rd = sr.RangeDecoder(data)
    pd = [2048, 0]
    assert [rd.bit(pd) for _ in range(5)] == [0, 1, 1, 0, 0]
    # n = 0, 1, 2, 3 -> sh = 2; n = 4 -> sh = 3
    P = 2048
    for b, sh in ((0, 2), (1, 2), (1, 2), (0, 2), (0, 3)):
        P = P + ((4096 - P) >> sh) if b == 0 else P - (P >> sh)
    assert pd == pe == [P, 5]
    assert [rd.direct(), rd.direct()] == [1, 0]
    rd.finish()


# ---------------------------------------------------------------------------
# §6.5 Coding 5: coding 3 with a maximum error N, from §6.5's "Encoder view"
# ---------------------------------------------------------------------------


def subj5(S, M, channels, max_error, payload: bytes = None, rng=None) -> bytes:
    """SUBJ body of coding 5: the box, then u8 N and the stream (payload = both)."""
    if payload is None:
        payload = bytes([max_error]) + encode_coding3(S, M, channels, rng, max_error=max_error)
    return struct.pack(">BIIII", 5, *box_of(M)) + payload


def saturated_sample(channels, W, H, seed):
    """Values at and next to 0 and 255, flat saturated areas and hard 0 <-> 255 jumps."""
    rng = np.random.default_rng(seed)
    S = rng.choice(np.array([0, 1, 2, 3, 128, 252, 253, 254, 255], np.uint8), (H, W, channels))
    S[: H // 2, : W // 2] = 255
    S[H // 2 :, W // 2 :] = 0
    S[::3, :, 0] = 255 - S[::3, :, 0]  # R against G: colour differences of ±255
    M = (rng.random((H, W)) < 0.8).astype(np.uint8)  # holes: background pixels in the box
    B = rng.integers(0, 256, (H, W, channels), dtype=np.uint8)
    if channels == 4:
        B[0, 0, 3] = 7
    return S, M, B


def assert_within(img, S, M, B, max_error):
    """§6.5 "Guarantee" at subject pixels; the background elsewhere (F = 0, s = 1)."""
    diff = np.abs(img.pixels.astype(int) - S.astype(int))[M == 1]
    assert diff.max() <= max_error
    np.testing.assert_array_equal(img.pixels[M == 0], B[M == 0])
    return diff


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("max_error", [1, 2, 5, 31])
@pytest.mark.parametrize("kind", ["random", "smooth", "saturated", "wide-residuals"])
def test_roundtrip_coding5(channels, max_error, kind):
    seed = channels * 100 + max_error
    if kind == "smooth":
        S, M, B = smooth_sample(channels, 21, 14, seed=seed)
    elif kind == "random":
        S, M, B = sample(channels, seed=seed)
    else:
        S, M, B = saturated_sample(channels, 17, 11, seed=seed)
    rng = np.random.default_rng(seed) if kind == "wide-residuals" else None
    img = read_ppan(build(channels, S, M, B, subj=subj5(S, M, channels, max_error, rng=rng)))
    np.testing.assert_array_equal(img.mask, M)
    diff = assert_within(img, S, M, B, max_error)
    if kind in ("random", "saturated"):
        assert diff.max() > 0  # near-lossless for real, not lossless by accident


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (2, 2)])
@pytest.mark.parametrize("channels", [1, 4])
def test_coding5_thin_boxes(shape, channels):
    H, W = shape
    rng = np.random.default_rng(H * 31 + W)
    S = rng.integers(0, 256, (H + 2, W + 2, channels), dtype=np.uint8)
    S[0::2, :, 0] = 255
    B = rng.integers(0, 256, (H + 2, W + 2, channels), dtype=np.uint8)
    if channels == 4:
        B[0, 0, 3] = 7
    M = np.zeros((H + 2, W + 2), np.uint8)
    M[1 : H + 1, 1 : W + 1] = 1
    for max_error in (1, 31):
        img = read_ppan(build(channels, S, M, B, subj=subj5(S, M, channels, max_error, rng=rng)))
        assert_within(img, S, M, B, max_error)


@pytest.mark.parametrize("max_error, expected", [(1, 78), (2, 75), (31, 63)])
def test_coding5_constant_subject_by_hand(max_error, expected):
    # Grey 77 everywhere. Pixel (0, 0): pred 0, d = 77, e = floor((77 + N) / step):
    # N = 1: e = 26, G = 78; N = 2: e = 15, G = 75; N = 31: e = 1, G = 63. Then
    # |d| <= N everywhere, so e = 0: G stays; R − G' = B − G' = 77 − G', |.| <= N, e = 0,
    # V1 = V2 = 0 and R = B = G. The image is the constant `expected`.
    S = np.full((6, 8, 3), 77, np.uint8)
    M = np.ones((6, 8), np.uint8)
    payload = encode_coding3(S, M, 3, max_error=max_error)
    assert len(payload) < 20
    img = read_ppan(build(3, S, M, np.zeros_like(S), subj=subj5(S, M, 3, max_error)))
    assert (img.pixels == expected).all()


def residual_stream(residuals) -> bytes:
    """A §6.3 stream of residuals, each coded with its own fresh (Z[c], S[s]) given by hand."""
    enc = LzmaRangeEncoder()
    models = {}
    for (p, c, s), e in residuals:
        zs = models.setdefault(("Z", p, c), [[2048, 0] for _ in range(15)])
        sg = models.setdefault(("S", p, s), [2048, 0])
        enc.bit(zs[0], int(e != 0))
        if e != 0:
            m = abs(e)
            enc.bit(sg, int(e < 0))
            x = m.bit_length() - 1
            for k in range(x):
                enc.bit(zs[1 + k], 1)
            if x < 7:
                enc.bit(zs[1 + x], 0)
            if x >= 1:
                enc.bit(zs[7 + x], (m >> (x - 1)) & 1)
                for k in range(x - 2, -1, -1):
                    enc.direct((m >> k) & 1)
    return enc.finish()


def one_pixel_file(channels, max_error, stream: bytes) -> bytes:
    M = np.ones((1, 1), np.uint8)
    B = np.full((1, 1, channels), 9, np.uint8)
    if channels == 4:
        B[0, 0, 3] = 7
    body = struct.pack(">BIIII", 5, 0, 0, 1, 1) + bytes([max_error]) + stream
    return build(channels, None, M, B, subj=body)


def test_coding5_one_pixel_by_hand():
    # Pixel (0, 0): W = N = NW = NE = 0, pred 0, act 0, so q = 0. P0 and P3: c = 0, s = 0.
    # P1 and P2 are colour planes with W = NW and N = NW: t = 3, c = 27 + 36·u, s = 27·u.
    # L, N = 31: e = 255 steps -> clamp(255 · 63) = 255; e = −255 -> 0; e = 2 -> 126.
    for e, want in ((255, 255), (-255, 0), (2, 126), (-1, 0), (0, 0)):
        img = read_ppan(one_pixel_file(1, 31, residual_stream([((0, 0, 0), e)])))
        assert img.pixels[0, 0, 0] == want
    # RGBA, N = 1 (step 3): G: e = 2 -> 6; R: e = −5 -> clamp(6 − 15) − 6 = −6, R = 0;
    # B (u = sgn3(−5) = 2): e = 100 -> clamp(6 + 300) − 6 = 249, B = 255; A: e = 40 -> 120.
    stream = residual_stream([((0, 0, 0), 2), ((1, 27, 0), -5), ((2, 27 + 72, 54), 100), ((3, 0, 0), 40)])
    img = read_ppan(one_pixel_file(4, 1, stream))
    assert img.pixels[0, 0].tolist() == [0, 6, 255, 120]
    # RGB, N = 5 (step 11): G: e = 23 -> 253; R: e = 1 -> clamp(253 + 11) = 255;
    # B (u = 1): e = −1 -> 242.
    stream = residual_stream([((0, 0, 0), 23), ((1, 27, 0), 1), ((2, 27 + 36, 27), -1)])
    img = read_ppan(one_pixel_file(3, 5, stream))
    assert img.pixels[0, 0].tolist() == [255, 253, 242]


def test_coding5_second_pixel_by_hand():
    # A 2 x 1 L box, N = 1 (step 3). Pixel 0: e = 85 -> 255. Pixel 1 (row 0): W = N = NW =
    # NE = 255, pred 255, gradient 0, act = |eW| = 85 -> q = 6 (thresholds 3 … 60 <= 85);
    # s = 3·sgn3(eW) = 3. e = 3 -> clamp(264) = 255; then a third pixel, W = 255, eW = 3:
    # act 3, q = 1, e = −86 -> clamp(255 − 258) = 0.
    M = np.ones((1, 3), np.uint8)
    B = np.zeros((1, 3, 1), np.uint8)
    stream = residual_stream([((0, 0, 0), 85), ((0, 6, 3), 3), ((0, 1, 3), -86)])
    body = struct.pack(">BIIII", 5, 0, 0, 3, 1) + b"\x01" + stream
    img = read_ppan(build(1, None, M, B, subj=body))
    assert img.pixels[0, :, 0].tolist() == [255, 255, 0]


def test_coding5_payload_rules():
    S, M, B = sample(3, seed=5)
    p = {
        "HEAD": head(3, M.shape[1], M.shape[0]),
        "BGND": bgnd(B, 3),
        "MASK": mask_chunk_body(M),
        "DONE": b"",
    }
    stream = encode_coding3(S, M, 3, max_error=2)
    p["SUBJ"] = subj5(S, M, 3, 2, b"\x02" + stream)
    read_ppan(assemble(p))
    bad_payloads = {
        "empty payload": b"",
        "N only, no stream": b"\x02",
        "N = 0": b"\x00" + stream,
        "N = 32": b"\x20" + stream,
        "N = 255": b"\xff" + stream,
        "truncated stream": b"\x02" + stream[:-1],
        "stream too short to start": b"\x02" + stream[:3],
        "trailing byte": b"\x02" + stream + b"\x00",
    }
    for what, bad in bad_payloads.items():
        p["SUBJ"] = subj5(S, M, 3, 2, bad)
        with pytest.raises(SpecError):
            read_ppan(assemble(p))
            pytest.fail(what)
    x0, y0, w, h = box_of(M)
    p["SUBJ"] = struct.pack(">BIIII", 5, x0, y0, w, h + 1) + b"\x02" + stream  # box != mask box
    with pytest.raises(SpecError):
        read_ppan(assemble(p))
    p["MASK"] = mask_chunk_body(np.zeros_like(M))
    p["SUBJ"] = struct.pack(">BIIII", 5, 0, 0, 0, 0) + b"\x02"  # coding 5 with n = 0
    with pytest.raises(SpecError):
        read_ppan(assemble(p))
    p["SUBJ"] = struct.pack(">BIIII", 6, 0, 0, 0, 0)  # coding 6 is unknown in version 1
    with pytest.raises(SpecError):
        read_ppan(assemble(p))


def test_coding5_other_max_error_byte_changes_the_image():
    # The stream does not carry N: the same stream read with another N is another image
    # (steps scale), so the u8 N is really used.
    S, M, B = smooth_sample(1, 9, 7, seed=3)
    stream = encode_coding3(S, M, 1, max_error=1)
    a = read_ppan(build(1, S, M, B, subj=subj5(S, M, 1, 1, b"\x01" + stream)))
    b = read_ppan(build(1, S, M, B, subj=subj5(S, M, 1, 2, b"\x02" + stream)))
    assert (np.abs(a.pixels.astype(int) - S)[M == 1]).max() <= 1
    assert not np.array_equal(a.pixels, b.pixels)


# ---------------------------------------------------------------------------
# §6.4 Coding 4: JPEG coefficients, coder 1 (Brotli), with a writer from the spec
# ---------------------------------------------------------------------------
#
# Expected pixels come from elsewhere: flat DC-only blocks (closed form), a float DCT
# of known samples, and Pillow (libjpeg-turbo) decoding a baseline JPEG file that a tiny
# writer below makes from the same coefficients.


def zigzag_walk():
    """T.81 Figure A.6, walked independently of the spec's table."""
    order = []
    for d in range(15):
        cells = [(r, d - r) for r in range(8) if 0 <= d - r < 8]
        order += [8 * r + c for r, c in (reversed(cells) if d % 2 == 0 else cells)]
    return order


ZZ = zigzag_walk()
K1 = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]  # fmt: skip
K2 = [17, 18, 24, 47] + [99] * 4 + [18, 21, 26, 66] + [99] * 4 + [24, 26, 56] + [99] * 5 + [47, 66] + [99] * 38


def ijg(base, q):
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return [min(max((b * scale + 50) // 100, 1), 255) for b in base]


def wrap16(x):
    return ((x + 32768) & 0xFFFF) - 32768


def c4_geometry(W, H, comps):
    """comps: [(h, v, t)] -> per component (dw, dh, nbx, nby, rh, rv) (§6.4.2)."""
    hmax = max(c[0] for c in comps)
    vmax = max(c[1] for c in comps)
    out = []
    for h, v, _t in comps:
        dw, dh = math.ceil(W * h / hmax), math.ceil(H * v / vmax)
        out.append((dw, dh, math.ceil(dw / 8), math.ceil(dh / 8), hmax // h, vmax // v))
    return out


def reads_matrix(r, d, n):
    """R[x, s] = pixel coordinate x reads sample s: the taps of §6.4.6.3 (triangle for r = 2)."""
    R = np.zeros((n, d), bool)
    for x in range(n):
        if r == 1:
            taps = [x]
        elif r == 2:
            cx = x >> 1
            taps = [cx, cx - 1 if x % 2 == 0 else cx + 1]
        else:
            taps = [x // r]
        for s in taps:
            R[x, min(max(s, 0), d - 1)] = True
    return R


def stored_blocks(M, W, H, comps):
    """§6.4.3 via matrices: needed = Rv^T · M · Rh; a block is stored if it holds one."""
    out = []
    for dw, dh, nbx, nby, rh, rv in c4_geometry(W, H, comps):
        needed = (reads_matrix(rv, dh, H).T.astype(int) @ M.astype(int) @ reads_matrix(rh, dw, W).astype(int)) > 0
        grid = [(bx, by) for by in range(nby) for bx in range(nbx)]
        out.append([(bx, by) for bx, by in grid if needed[8 * by : 8 * by + 8, 8 * bx : 8 * bx + 8].any()])
    return out


def c4_coder1(blocks_per_comp) -> bytes:
    """§6.4.4 encoder view: S before Brotli. blocks_per_comp: lists of 64 natural-order ints."""
    head_bytes, escapes = bytearray(), bytearray()
    for blocks in blocks_per_comp:
        for k in range(64):
            for j, C in enumerate(blocks):
                if k == 0:
                    V = C[0] if j == 0 else wrap16(C[0] - blocks[j - 1][0])
                else:
                    V = C[ZZ[k]]
                z = 2 * V if V >= 0 else -2 * V - 1
                head_bytes.append(min(z, 255))
                if z >= 255:
                    escapes += struct.pack(">H", z - 255)
    return bytes(head_bytes + escapes)


def c4_payload(W, H, comps, tables, data: bytes, coder=1, transform=None) -> bytes:
    """§6.4.1. comps [(h, v, t)]; tables [(kind, natural list or quality)]; data after the tables."""
    if transform is None:
        transform = 1 if len(comps) == 3 else 0
    out = struct.pack(">BHHBB", coder, W, H, transform, len(comps))
    for h, v, t in comps:
        out += bytes([(h << 4) | v, t])
    out += bytes([len(tables)])
    for kind, val in tables:
        out += bytes([kind])
        if kind == 0:
            out += bytes(val[ZZ[k]] for k in range(64))
        elif kind == 1:
            out += b"".join(struct.pack(">H", val[ZZ[k]]) for k in range(64))
        else:
            out += bytes([val])
    return out + data


def table_values(kind, val):
    return ijg(K1 if kind == 2 else K2, val) if kind in (2, 3) else list(val)


def subj4(M, payload: bytes) -> bytes:
    return struct.pack(">BIIII", 4, *box_of(M)) + payload


def coding4_file(M, comps, tables, grids, coder_data=None, transform=None, channels=None, B=None):
    """A whole PPAN file: grids[i][(bx, by)] = coefficients of component i (natural order)."""
    H, W = M.shape
    channels = channels or (3 if len(comps) == 3 else 1)
    sel = stored_blocks(M, W, H, comps)
    if coder_data is None:
        S = c4_coder1([[grids[i][key] for key in sel[i]] for i in range(len(comps))])
        coder_data = brotli.compress(S)
    payload = c4_payload(W, H, comps, tables, coder_data, transform=transform)
    if B is None:
        B = np.random.default_rng(0).integers(0, 256, (H, W, channels), dtype=np.uint8)
    return build(channels, None, M, B, subj=subj4(M, payload))


def fdct(block: np.ndarray) -> np.ndarray:
    """Float JPEG FDCT (T.81 A.3.3) of an 8x8 block of level-shifted samples."""
    u = np.arange(8)
    Cm = np.cos((2 * u[None, :] + 1) * u[:, None] * np.pi / 16) / 2
    Cm[0] /= math.sqrt(2)
    return Cm @ block @ Cm.T


def idct_float(F: np.ndarray) -> np.ndarray:
    u = np.arange(8)
    Cm = np.cos((2 * u[None, :] + 1) * u[:, None] * np.pi / 16) / 2
    Cm[0] /= math.sqrt(2)
    return Cm.T @ F @ Cm


def coefficient_grid(plane: np.ndarray, Q, rng=None, noise=0):
    """Quantised DCT blocks of a sample plane (height, width multiples of 8)."""
    grid = {}
    Qa = np.array(Q, float).reshape(8, 8)
    for by in range(plane.shape[0] // 8):
        for bx in range(plane.shape[1] // 8):
            F = fdct(plane[8 * by : 8 * by + 8, 8 * bx : 8 * bx + 8].astype(float) - 128)
            C = np.round(F / Qa).astype(int)
            if rng is not None and noise:
                C += rng.integers(-noise, noise + 1, (8, 8)) * (rng.random((8, 8)) < 0.15)
            grid[(bx, by)] = [int(v) for v in C.reshape(64)]
    return grid


def smooth_plane(h, w, seed, amp=90):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    f = 128 + amp * np.sin(xx / (3 + seed % 3) + rng.random() * 6) * np.cos(yy / 4.0 + rng.random() * 6)
    f += rng.normal(0, 6, (h, w))
    return np.clip(np.round(f), 0, 255).astype(np.uint8)


# ----- tables --------------------------------------------------------------


def test_coding4_tables_from_the_spec():
    assert sr.ZIGZAG == ZZ
    assert sr.ZIGZAG[:6] == [0, 1, 8, 16, 9, 2] and sr.ZIGZAG[-3:] == [55, 62, 63]
    assert len(sr.INTERIOR) == 49 and sr.INTERIOR == [z for z in ZZ if z // 8 >= 1 and z % 8 >= 1]
    assert sr.BAND[0] == 0 and sr.BAND[-1] == 9 and sr.BAND == sorted(sr.BAND)
    # NZB / NRB cover 0 … 63 and are non-decreasing
    for table, top in ((sr.NZB, 13), (sr.NRB, 9)):
        assert len(table) == 64 and table == sorted(table) and table[-1] == top
    assert sr.NZB[:6] == [1, 2, 3, 4, 5, 6] and sr.NRB[:3] == [0, 0, 1]
    # region sizes: 25 regions, 7 weight-set groups
    assert len(sr.C2_REGIONS) == 25 and sr.C2_REGIONS["NZ7B"] == 14 * 14 * 64 and sr.C2_REGIONS["DCS"] == 30
    assert sr.C2_WEIGHT_SETS == {"NZ7": 12, "IZ": 10, "IE": 17, "NZE": 12, "EZ": 2, "EE": 34, "DC": 36}


def test_ijg_tables_quality_50_are_t81_and_match_libjpeg():
    assert sr.ijg_table(2, 50) == K1 == sr.T81_K1
    assert sr.ijg_table(3, 50) == K2 == sr.T81_K2
    assert sr.ijg_table(2, 100) == [1] * 64
    assert sr.ijg_table(3, 1) == [255] * 64  # clamped
    # libjpeg (through Pillow) writes the same tables for other qualities
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "RGB")
    for q in (10, 75, 95):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=q)
        qt = Image.open(io.BytesIO(buf.getvalue())).quantization  # natural order (Pillow >= 8.3)
        assert list(qt[0]) == sr.ijg_table(2, q), q
        assert list(qt[1]) == sr.ijg_table(3, q), q


def test_squash_and_stretch():
    sq = [sr.squash(d) for d in range(-2047, 2048)]
    assert sq == sorted(sq)  # monotone
    assert sr.squash(0) == 2047 and sr.squash(-5000) == sr.squash(-2047) and sr.squash(5000) == sr.squash(2047)
    logistic = lambda d: 4096 / (1 + math.exp(-d / 256))  # noqa: E731  (PAQ's squash)
    for i, k in enumerate(sr.SQUASH_K):  # the knots are the logistic (within 1) ...
        assert abs(k - logistic((i - 16) * 128)) <= 1, i
    for d in range(-2047, 2048):  # ... and squash interpolates between them
        i = (d + 2048) // 128
        if d % 128 == 0:
            assert sr.squash(d) == sr.SQUASH_K[i]
        assert sr.SQUASH_K[i] <= sr.squash(d) <= sr.SQUASH_K[i + 1]
        assert abs(sr.squash(d) - logistic(d)) < 0.05 * logistic(d) + 1, d
    st = [sr.stretch(p) for p in range(4096)]
    assert st == sorted(st)  # monotone
    for p in range(4096):
        d = st[p]
        if p <= max(sq):
            assert sr.squash(d) >= p and (d == -2047 or sr.squash(d - 1) < p)
        else:
            assert d == 2047
    assert sr.stretch(2047) == 0


def test_coder2_range_decoder_and_context_update_by_hand():
    # §6.4.5.1: bit 1 takes the low part [0, bound). An encoder for it (the §6.4.5.1
    # "encoder view": LZMA's, 16-bit probabilities, first byte dropped).
    class Enc(LzmaRangeEncoder):
        def bit16(self, P, b):
            bound = (self.range >> 16) * P
            if b == 1:
                self.range = bound
            else:
                self.low += bound
                self.range -= bound
            self._norm()

    rng = np.random.default_rng(4)
    seq = [(int(rng.integers(64, 65473)), int(rng.random() < 0.3)) for _ in range(500)]
    enc = Enc()
    for P, b in seq:
        enc.bit16(P, b)
    data = enc.finish()
    rd = sr.Coder2RangeDecoder(data)
    assert [rd.decode(P) for P, _ in seq] == [b for _, b in seq]
    rd.finish()
    with pytest.raises(SpecError):
        rd = sr.Coder2RangeDecoder(data[:-1])
        for P, _ in seq:
            rd.decode(P)
        rd.finish()
    with pytest.raises(SpecError):
        rd = sr.Coder2RangeDecoder(data + b"\x00")
        for P, _ in seq:
            rd.decode(P)
        rd.finish()
    # §6.4.5.2 update, by hand: n = 0 -> RATE 21845
    c = [32768, 0]
    sr.Coder2Model.update(c, 1)
    assert c == [32768 + ((32768 * 21845) >> 16), 1]
    c = [100, 119]
    sr.Coder2Model.update(c, 0)
    assert c == [max(100 - ((100 * (65536 // 122)) >> 16), 64), 120]
    c = [65470, 0]  # 65470 + (66 · 21845 >> 16) = 65491 -> clamped to 65472
    sr.Coder2Model.update(c, 1)
    assert c == [65472, 1]
    c = [70, 0]
    sr.Coder2Model.update(c, 0)
    assert c == [64, 1]


# ----- reconstruction by closed forms -----------------------------------------


def test_idct_dc_only_is_flat():
    Q = [1] * 64
    for D0 in (0, 1, 3, 4, 5, -4, -5, -1024, 1016, 1023, 2000, -2000, 7, -9):
        C = [0] * 64
        C[0] = D0
        out = sr.idct_islow(C, Q)
        assert out == [[min(max(math.floor((D0 + 4) / 8) + 128, 0), 255)] * 8] * 8, D0


def test_idct_close_to_float_and_column_shortcut():
    rng = np.random.default_rng(1)
    for _ in range(30):
        F = np.round(fdct(rng.integers(0, 256, (8, 8)).astype(float) - 128)).astype(int)
        ours = np.array(sr.idct_islow([int(v) for v in F.reshape(64)], [1] * 64))
        ref = np.clip(idct_float(F.astype(float)) + 128, 0, 255)
        assert np.abs(ours - ref).max() <= 1.0
    # Pass 1: a column with only its DC gives 4·D[c] in every row (the libjpeg shortcut)
    col = sr.idct8([37, 0, 0, 0, 0, 0, 0, 0])
    assert [(y + 1024) >> 11 for y in col] == [148] * 8


def test_coding4_grey_dc_only_blocks_are_flat():
    # 20 x 12 grey image: 3 x 2 blocks, DC only; a table of kind 1 (u16) with Q[0] = 300.
    W, H = 20, 12
    M = np.zeros((H, W), np.uint8)
    M[2:11, 1:19] = 1
    M[0, 19] = 1
    Q = [300] + [7] * 63
    dcs = {(0, 0): -3, (1, 0): 0, (2, 0): 2, (0, 1): 1, (1, 1): -1, (2, 1): 400}
    grids = [{k: [v] + [0] * 63 for k, v in dcs.items()}]
    img = read_ppan(coding4_file(M, [(1, 1, 0)], [(1, Q)], grids))
    for y, x in zip(*np.nonzero(M)):
        D0 = dcs[(x // 8, y // 8)] * 300
        assert img.pixels[y, x, 0] == min(max(math.floor((D0 + 4) / 8) + 128, 0), 255)


def test_coding4_grey_float_dct_reproduces_samples():
    # 1 component, table of 1s (kind 0): the decoded samples are the originals within rounding.
    W, H = 21, 18
    plane = np.zeros((24, 24), np.uint8)
    plane[:H, :W] = smooth_plane(H, W, seed=3)
    grid = coefficient_grid(plane, [1] * 64)
    assert max(abs(v) for C in grid.values() for v in C) > 127  # exercises the u16 escapes
    M = np.ones((H, W), np.uint8)
    img = read_ppan(coding4_file(M, [(1, 1, 0)], [(0, [1] * 64)], [grid]))
    diff = img.pixels[:, :, 0].astype(int) - plane[:H, :W].astype(int)
    assert np.abs(diff).max() <= 2 and np.abs(diff).mean() < 0.5


def test_coding4_flat_colours_4_2_0():
    # Y at 2x2, chroma at 1x1, every block DC only: each pixel is the §6.4.6.4 colour of
    # its flat (Y, Cb, Cr); the fancy upsampling of a constant is that constant.
    W, H = 29, 19
    comps = [(2, 2, 0), (1, 1, 1), (1, 1, 1)]
    geo = c4_geometry(W, H, comps)
    rng = np.random.default_rng(7)
    Ydc = int(rng.integers(-60, 60))
    grids = []
    for i, (dw, dh, nbx, nby, rh, rv) in enumerate(geo):
        dc = Ydc if i == 0 else (-40 if i == 1 else 55)
        grids.append({(bx, by): [dc] + [0] * 63 for by in range(nby) for bx in range(nbx)})
    M = np.zeros((H, W), np.uint8)
    M[3:15, 4:25] = 1
    img = read_ppan(coding4_file(M, comps, [(0, [2] * 64), (0, [3] * 64)], grids))
    Y = (Ydc * 2 + 4) // 8 + 128
    Cb = (-40 * 3 + 4) // 8 + 128
    Cr = (55 * 3 + 4) // 8 + 128
    R = Y + round(1.402 * (Cr - 128))
    G = Y + round(-0.34414 * (Cb - 128) - 0.71414 * (Cr - 128))
    Bl = Y + round(1.772 * (Cb - 128))
    expect = np.clip([R, G, Bl], 0, 255)
    assert (img.pixels[M == 1] == expect).all()


# ----- reconstruction against Pillow: a baseline JPEG writer ------------------


class BitWriter:
    def __init__(self):
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def put(self, code, length):
        for i in range(length - 1, -1, -1):
            self.acc = (self.acc << 1) | ((code >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)  # byte stuffing
                self.acc = self.n = 0

    def flush(self):
        while self.n:
            self.put(1, 1)  # pad with 1s
        return bytes(self.out)


def write_baseline_jpeg(W, H, comps, qtables, grids, ids=(1, 2, 3)) -> bytes:
    """Baseline sequential Huffman JPEG (T.81) from quantised coefficients.

    comps [(h, v, t)]; qtables: natural-order u8 tables; grids[i][(bx, by)]: coefficients.
    Huffman tables: 12 DC symbols of 4 bits, 162 AC symbols of 8 bits (valid, just not small).
    Blocks outside a grid (MCU padding) are coded as copies of the DC with no AC.
    """
    seg = lambda marker, body: struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body  # noqa: E731
    out = b"\xff\xd8"
    for i, Q in enumerate(qtables):
        out += seg(0xDB, bytes([i]) + bytes(Q[ZZ[k]] for k in range(64)))
    sof = struct.pack(">BHHB", 8, H, W, len(comps))
    for i, (h, v, t) in enumerate(comps):
        sof += bytes([ids[i], (h << 4) | v, t])
    out += seg(0xC0, sof)
    dc_syms = list(range(12))
    ac_syms = [0x00, 0xF0] + [(r << 4) | s for r in range(16) for s in range(1, 11)]
    counts_dc = [0] * 16
    counts_dc[3] = 12
    counts_ac = [0] * 16
    counts_ac[7] = len(ac_syms)
    out += seg(0xC4, bytes([0x00] + counts_dc + dc_syms) + bytes([0x10] + counts_ac + ac_syms))
    sos = bytes([len(comps)]) + b"".join(bytes([ids[i], 0x00]) for i in range(len(comps))) + bytes([0, 63, 0])
    out += seg(0xDA, sos)
    dc_code = {s: (s, 4) for s in dc_syms}
    ac_code = {s: (k, 8) for k, s in enumerate(ac_syms)}
    bw = BitWriter()
    prev = [0] * len(comps)

    def mag(v):
        s = abs(v).bit_length()
        return s, (v if v >= 0 else v + (1 << s) - 1)

    def block(i, C):
        s, bits = mag(C[0] - prev[i])
        assert s <= 11
        prev[i] = C[0]
        bw.put(*dc_code[s])
        bw.put(bits, s)
        run = 0
        for k in range(1, 64):
            v = C[ZZ[k]]
            if v == 0:
                run += 1
                continue
            while run > 15:
                bw.put(*ac_code[0xF0])
                run -= 16
            s, bits = mag(v)
            assert 1 <= s <= 10
            bw.put(*ac_code[(run << 4) | s])
            bw.put(bits, s)
            run = 0
        if run:
            bw.put(*ac_code[0x00])

    geo = c4_geometry(W, H, comps)

    def get(i, bx, by):
        C = grids[i].get((bx, by))
        return C if C is not None else [prev[i]] + [0] * 63

    if len(comps) == 1:
        dw, dh, nbx, nby, _, _ = geo[0]
        for by in range(nby):
            for bx in range(nbx):
                block(0, get(0, bx, by))
    else:
        hmax = max(c[0] for c in comps)
        vmax = max(c[1] for c in comps)
        for my in range(math.ceil(H / (8 * vmax))):
            for mx in range(math.ceil(W / (8 * hmax))):
                for i, (h, v, _t) in enumerate(comps):
                    for yy in range(v):
                        for xx in range(h):
                            block(i, get(i, mx * h + xx, my * v + yy))
    return out + bw.flush() + b"\xff\xd9"


def jpeg_case(W, H, comps, qtables, seed, noise=1):
    rng = np.random.default_rng(seed)
    hmax = max(c[0] for c in comps)
    vmax = max(c[1] for c in comps)
    grids = []
    for i, (h, v, t) in enumerate(comps):
        # cover the MCU-padded grid so that libjpeg sees real data everywhere
        ph = math.ceil(H / (8 * vmax)) * v * 8
        pw = math.ceil(W / (8 * hmax)) * h * 8
        plane = smooth_plane(ph, pw, seed=seed + i, amp=90 if i == 0 else 40)
        grids.append(coefficient_grid(plane, qtables[t], rng, noise))
    return grids


def mask_sample(W, H, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    M = (((xx - W * 0.55) / (W * 0.3)) ** 2 + ((yy - H * 0.4) / (H * 0.3)) ** 2 <= 1).astype(np.uint8)
    M[H - 1, :3] = 1  # touching the bottom-left corner
    M[0, W - 1] = 1  # a lone pixel at the top-right corner
    M[rng.integers(0, H, 6), rng.integers(0, W, 6)] = 1
    return M


JPEG_LAYOUTS = {
    "grey": [(1, 1, 0)],
    "4:4:4": [(1, 1, 0), (1, 1, 1), (1, 1, 1)],
    "4:2:0": [(2, 2, 0), (1, 1, 1), (1, 1, 1)],
    "4:2:2": [(2, 1, 0), (1, 1, 1), (1, 1, 1)],
    "4:4:0": [(1, 2, 0), (1, 1, 1), (1, 1, 1)],
    "4:1:1": [(4, 1, 0), (1, 1, 1), (1, 1, 1)],
    "mixed": [(2, 2, 0), (1, 2, 1), (2, 1, 1)],  # h1v2 and h2v1 in one image
    "4x2": [(4, 2, 0), (1, 1, 1), (1, 1, 1)],  # replication (4, 2) (10 blocks per MCU, T.81's limit)
    "4x1+2x1": [(4, 1, 0), (1, 1, 1), (2, 1, 1)],  # replication (4, 1) and fancy (2, 1)
}


@pytest.mark.parametrize(
    "layout, size, rgb_ids",
    [
        ("grey", (21, 19), False),
        ("4:4:4", (19, 13), False),
        ("4:4:4", (17, 11), True),  # component ids 'R', 'G', 'B': transform 0
        ("4:2:0", (37, 29), False),
        ("4:2:0", (4, 9), False),  # dw = 2: h2v2 by replication
        ("4:2:0", (6, 5), False),  # dw = 3: the smallest fancy width
        ("4:2:2", (33, 17), False),
        ("4:2:2", (3, 10), False),  # dw = 2: h2v1 by replication
        ("4:2:2", (5, 12), False),  # dw = 3: the smallest fancy width
        ("4:4:0", (18, 35), False),
        ("4:1:1", (45, 11), False),
        ("mixed", (27, 23), False),
        ("4x2", (41, 19), False),
        ("4x1+2x1", (46, 9), False),
    ],
)
def test_coding4_matches_libjpeg_on_a_hand_written_jpeg(layout, size, rgb_ids):
    W, H = size
    comps = JPEG_LAYOUTS[layout]
    luma, chroma = ijg(K1, 80), ijg(K2, 80)
    qtables = [luma, chroma][: 1 + max(c[2] for c in comps)]
    grids = jpeg_case(W, H, comps, qtables, seed=W * 100 + H)
    ids = (82, 71, 66) if rgb_ids else (1, 2, 3)
    jpeg = write_baseline_jpeg(W, H, comps, qtables, grids, ids=ids)
    with Image.open(io.BytesIO(jpeg)) as im:
        assert im.size == (W, H)
        ref = np.asarray(im.convert("L" if len(comps) == 1 else "RGB")).reshape(H, W, -1)
    M = mask_sample(W, H, seed=W + H)
    # the tables as kinds 2/3 (IJG quality 80), luminance also as kind 0 in the grey case
    tables = [(2, 80), (3, 80)][: len(qtables)] if layout != "grey" else [(0, luma)]
    transform = 0 if (rgb_ids or len(comps) == 1) else 1
    img = read_ppan(coding4_file(M, comps, tables, grids, transform=transform))
    np.testing.assert_array_equal(img.pixels[M == 1], ref[M == 1])
    # the whole image as subject too
    M1 = np.ones((H, W), np.uint8)
    img = read_ppan(coding4_file(M1, comps, tables, grids, transform=transform))
    np.testing.assert_array_equal(img.pixels, ref)


def test_coding4_block_selection_by_hand():
    # 4:2:0, 40 x 24: Y is 5 x 3 blocks, chroma 20 x 12 samples = 3 x 2 blocks.
    W, H = 40, 24
    comps = [(2, 2, 0), (1, 1, 0), (1, 1, 0)]
    M = np.zeros((H, W), np.uint8)
    M[16, 15] = 1  # Y block (1, 2); chroma: x = 15 reads 7, 8 -> blocks 0, 1; y = 16 reads 7, 8
    sel = stored_blocks(M, W, H, comps)
    assert sel[0] == [(1, 2)]
    assert sel[1] == sel[2] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    # the reader agrees (same stored count: a payload with any other count is rejected)
    grids = [{k: [0] * 64 for k in s} for s in sel]
    read_ppan(coding4_file(M, comps, [(2, 50)], grids))
    for i in range(3):
        for extra in ((2, 1), None):
            g2 = [dict(g) for g in grids]
            sel2 = [list(s) for s in sel]
            if extra is None:
                sel2[i] = sel2[i][:-1]
            else:
                sel2[i] = sel2[i] + [extra]
            S = c4_coder1([[[0] * 64 for _ in s] for s in sel2])
            with pytest.raises(SpecError):
                read_ppan(coding4_file(M, comps, [(2, 50)], g2, coder_data=brotli.compress(S)))


# ----- rejections ----------------------------------------------------------------


def _grey_case():
    W, H = 12, 10
    M = np.zeros((H, W), np.uint8)
    M[2:7, 3:11] = 1
    comps = [(1, 1, 0)]
    grids = [{(bx, by): [bx + by] + [1] * 63 for bx in range(2) for by in range(2)}]
    S = c4_coder1([[grids[0][k] for k in stored_blocks(M, W, H, comps)[0]]])
    return W, H, M, comps, grids, S


def _colour_case():
    W, H = 12, 10
    M = np.zeros((H, W), np.uint8)
    M[2:7, 3:11] = 1
    comps = [(2, 2, 0), (1, 1, 1), (1, 1, 1)]
    sel = stored_blocks(M, W, H, comps)
    S = c4_coder1([[[5] + [0] * 63 for _ in s] for s in sel])
    return W, H, M, comps, S


def _file(M, payload, channels):
    H, W = M.shape
    B = np.zeros((H, W, channels), np.uint8)
    return build(channels, None, M, B, subj=subj4(M, payload))


def test_coding4_valid_cases_decode():
    W, H, M, comps, grids, S = _grey_case()
    read_ppan(_file(M, c4_payload(W, H, comps, [(2, 75)], brotli.compress(S)), 1))
    W, H, M, comps, S = _colour_case()
    read_ppan(_file(M, c4_payload(W, H, comps, [(2, 75), (3, 75)], brotli.compress(S)), 3))


def test_coding4_header_rejections():
    W, H, M, comps, S = _colour_case()
    data = brotli.compress(S)
    tabs = [(2, 75), (3, 75)]
    good = c4_payload(W, H, comps, tabs, data)

    def bad_payloads():
        yield bytes([0]) + good[1:]  # coder 0
        yield bytes([3]) + good[1:]  # coder 3
        yield c4_payload(W + 1, H, comps, tabs, data)  # width
        yield c4_payload(W, H - 1, comps, tabs, data)  # height
        yield good[:5] + bytes([2]) + good[6:]  # transform 2
        yield c4_payload(W, H, [(5, 1, 0), (1, 1, 1), (1, 1, 1)], tabs, data)  # h = 5
        yield c4_payload(W, H, [(0, 1, 0), (1, 1, 1), (1, 1, 1)], tabs, data)  # h = 0
        yield c4_payload(W, H, [(2, 2, 0), (1, 0, 1), (1, 1, 1)], tabs, data)  # v = 0
        yield c4_payload(W, H, [(3, 2, 0), (2, 1, 1), (1, 1, 1)], tabs, data)  # 3 / 2
        yield c4_payload(W, H, [(2, 4, 0), (1, 3, 1), (1, 1, 1)], tabs, data)  # 4 / 3
        yield c4_payload(W, H, comps, [], data)  # m = 0
        yield c4_payload(W, H, comps, tabs + [(2, 50), (2, 50)], data)  # m = 4 > n
        yield c4_payload(W, H, [(2, 2, 0), (1, 1, 2), (1, 1, 1)], tabs, data)  # t >= m
        yield c4_payload(W, H, comps, [(2, 0), (3, 75)], data)  # quality 0
        yield c4_payload(W, H, comps, [(2, 75), (3, 101)], data)  # quality 101
        yield c4_payload(W, H, comps, [(2, 75), (4, 75)], data)  # kind 4
        yield c4_payload(W, H, comps, [(2, 75), (255, 75)], data)  # kind 255
        yield c4_payload(W, H, comps[:2], tabs, data)  # n = 2
        yield c4_payload(W, H, comps + [(1, 1, 1)], tabs, data)  # n = 4
        yield c4_payload(W, H, comps, tabs, data, transform=1)[:6] + bytes([0]) + good[7:]  # n = 0
        head_len = len(good) - len(data)
        for k in range(head_len):  # every truncation inside the fields
            yield good[:k]

    for payload in bad_payloads():
        with pytest.raises(SpecError):
            read_ppan(_file(M, payload, 3))
    read_ppan(_file(M, good, 3))

    # grey: one component with h or v != 1, transform 1 with n = 1, kinds 0 and 1 truncated
    W, H, M, comps, grids, S = _grey_case()
    data = brotli.compress(S)
    for payload in (
        c4_payload(W, H, [(2, 1, 0)], [(2, 75)], data),
        c4_payload(W, H, [(1, 2, 0)], [(2, 75)], data),
        c4_payload(W, H, comps, [(2, 75)], data, transform=1),
        c4_payload(W, H, comps, [(0, [1] * 64)], b"")[:-1],
        c4_payload(W, H, comps, [(1, [1] * 64)], b"")[:-1],
    ):
        with pytest.raises(SpecError):
            read_ppan(_file(M, payload, 1))
    for kind in (0, 1):
        read_ppan(_file(M, c4_payload(W, H, comps, [(kind, [1] * 64)], data), 1))


def test_coding4_channel_and_component_rules():
    W, H, M, comps, S = _colour_case()
    colour = c4_payload(W, H, comps, [(2, 75), (3, 75)], brotli.compress(S))
    Wg, Hg, Mg, compsg, gridsg, Sg = _grey_case()
    grey = c4_payload(Wg, Hg, compsg, [(2, 75)], brotli.compress(Sg))
    with pytest.raises(SpecError):
        read_ppan(_file(M, colour, 1))  # channels 1 with 3 components
    with pytest.raises(SpecError):
        read_ppan(_file(Mg, grey, 3))  # channels 3 with 1 component
    for payload, Mx in ((colour, M), (grey, Mg)):
        H_, W_ = Mx.shape
        B = np.zeros((H_, W_, 4), np.uint8)
        B[0, 0, 3] = 7
        with pytest.raises(SpecError):
            read_ppan(build(4, None, Mx, B, subj=subj4(Mx, payload)))  # channels 4
    # a box that is not the mask's, and coding 4 with an empty mask
    x0, y0, w, h = box_of(M)
    B = np.zeros((H, W, 3), np.uint8)
    with pytest.raises(SpecError):
        read_ppan(build(3, None, M, B, subj=struct.pack(">BIIII", 4, x0, y0, w, h + 1) + colour))
    with pytest.raises(SpecError):
        read_ppan(build(3, None, np.zeros_like(M), B, subj=struct.pack(">BIIII", 4, 0, 0, 0, 0) + colour))


def test_coding4_coder1_stream_rejections():
    W, H, M, comps, grids, S = _grey_case()
    N = len(stored_blocks(M, W, H, comps)[0])
    assert len(S) == 64 * N

    def rd(data):
        return read_ppan(_file(M, c4_payload(W, H, comps, [(2, 75)], data), 1))

    rd(brotli.compress(S))
    for bad in (
        brotli.compress(S[:-1]),  # one byte short
        brotli.compress(S + b"\x00"),  # one byte extra
        brotli.compress(S + b"\x00\x00"),  # an escape with no 255 byte
        brotli.compress(b"\xff" + S[1:]),  # a 255 byte without its escape
        brotli.compress(S)[:-1],  # Brotli stream cut short
        brotli.compress(S) + b"\x00",  # bytes after the Brotli stream
        brotli.compress(bytes(3 * 64 * N + 1)),  # over the cap
        b"",
    ):
        with pytest.raises(SpecError):
            rd(bad)
    # escapes: z = 255 + 65280 = 65535 is V = −32768 (valid); 65281 gives z = 65536 (invalid)
    for esc, ok in ((65280, True), (65281, False), (65535, False)):
        T = b"\xff" + S[1:] + struct.pack(">H", esc)
        if ok:
            img = rd(brotli.compress(T))
            assert img is not None
        else:
            with pytest.raises(SpecError):
                rd(brotli.compress(T))


def test_coding4_coder1_dc_wraps_modulo_65536():
    # DC differences wrap: blocks with DC 32767 then −32768 store V = wrap16(1) = 1 … and back.
    W, H = 16, 8
    M = np.ones((H, W), np.uint8)
    comps = [(1, 1, 0)]
    grids = [{(0, 0): [32767] + [0] * 63, (1, 0): [-32768] + [0] * 63}]
    S = c4_coder1([[grids[0][(0, 0)], grids[0][(1, 0)]]])
    assert S[1] == 2  # V[0][1] = wrap16(−32768 − 32767) = 1 -> z = 2
    img = read_ppan(coding4_file(M, comps, [(0, [1] * 64)], grids))
    assert (img.pixels[:, :8, 0] == 255).all() and (img.pixels[:, 8:, 0] == 0).all()


def test_coding4_coder2_truncated_payload_rejected():
    W, H, M, comps, grids, S = _grey_case()
    for data in (b"", b"\x00\x01\x02"):
        payload = c4_payload(W, H, comps, [(2, 75)], data, coder=2)
        with pytest.raises(SpecError):
            read_ppan(_file(M, payload, 1))


# ---------------------------------------------------------------------------
# §6.4.5 Coder 2: an encoder written from the text (the mirror of the model)
# ---------------------------------------------------------------------------

NZB_STARTS = [0, 1, 2, 3, 4, 5, 7, 9, 12, 16, 24, 32, 48]  # §6.4.5.5 NZB: 0→1 … 48–63→13
NRB_STARTS = [2, 3, 4, 5, 7, 10, 15, 23, 40]  # NRB: 0–1→0, 2→1 … 40–63→9


def nzb(x):
    return sum(1 for s in NZB_STARTS if s <= x)


def nrb(x):
    return sum(1 for s in NRB_STARTS if s <= x)


INTERIOR_ZZ = [z for z in ZZ if z >= 8 and z % 8 >= 1]


class Coder2Encoder(LzmaRangeEncoder):
    """Contexts and weight sets are created on first use (keyed by region and index)."""

    def __init__(self):
        super().__init__()
        self.ctx = {}
        self.wts = {}

    def code16(self, P, b):
        bound = (self.range >> 16) * P
        if b:
            self.range = bound
        else:
            self.low += bound
            self.range -= bound
        self._norm()

    @staticmethod
    def adapt(c, b):
        rate = 65536 // (c[1] + 3)
        c[0] = c[0] + (((65536 - c[0]) * rate) >> 16) if b else c[0] - ((c[0] * rate) >> 16)
        c[0] = min(max(c[0], 64), 65472)
        c[1] = min(c[1] + 1, 120)

    def cbit(self, key, b):
        c = self.ctx.setdefault(key, [32768, 0])
        self.code16(c[0], b)
        self.adapt(c, b)

    def mixed(self, keys, wkey, b, s4=0):
        cs = [self.ctx.setdefault(k, [32768, 0]) for k in keys]
        w = self.wts.setdefault(wkey, [29491, 29491, 29491, 0, 16384])
        s = [sr.stretch(c[0] >> 4) for c in cs] + [256, s4]
        dot = min(max(sum(wi * si for wi, si in zip(w, s)) >> 16, -2047), 2047)
        pm = sr.squash(dot)
        self.code16(min(max(16 * pm, 64), 65472), b)
        err = ((b << 12) - pm) * 10
        for k in range(5):
            w[k] += (s[k] * err) >> 13
        for c in cs:
            self.adapt(c, b)

    def tree(self, nb, bases, wbase, value):
        node = 1
        for d in range(nb):
            b = (value >> (nb - 1 - d)) & 1
            self.mixed([(r, o + node) for r, o in bases], (wbase[0], wbase[1] + d), b)
            node = 2 * node + b

    def exponent(self, bases, wbase, f, g, e):
        for j in range(f, 17):
            b = int(e > j)
            s4 = 0 if g is None else min(max((g - j) * 384, -2047), 2047)
            self.mixed([(r, o + j - f) for r, o in bases], (wbase[0], wbase[1] + j - f), b, s4)
            if not b:
                return

    def mantissa(self, e, M, a):
        for q in range(e - 2, -1, -1):
            b = (a >> q) & 1
            if q >= e - 3:
                self.cbit((M[0], M[1] + 2 * e + (e - 2 - q)), b)
            else:
                self.code16(32768, b)


def encode_coder2(comps_blocks, tables, n7_override=None) -> bytes:
    """comps_blocks: per component {(bx, by): 64 coefficients} of its stored blocks only;
    tables: per component its natural-order Q. Blocks are coded in raster order."""
    enc = Coder2Encoder()
    for ci, blocks in enumerate(comps_blocks):
        cc = 0 if ci == 0 else 1
        Q = tables[ci]
        info = {}  # (bx, by) -> (n7, ne, r)
        last = 0
        for bx, by in sorted(blocks, key=lambda k: (k[1], k[0])):
            C = blocks[(bx, by)]
            nb = {name: ((bx + dx, by + dy) if (bx + dx, by + dy) in info else None)
                  for name, dx, dy in (("L", -1, 0), ("A", 0, -1), ("AL", -1, -1), ("AR", 1, -1))}  # fmt: skip
            Cn = {k: (blocks[v] if v else None) for k, v in nb.items()}
            L, A, AL, AR = Cn["L"], Cn["A"], Cn["AL"], Cn["AR"]
            iL = info.get(nb["L"]) if nb["L"] else None
            iA = info.get(nb["A"]) if nb["A"] else None

            def prior(z):
                if L and A and AL and AR:
                    x = ((13 * (abs(L[z]) + abs(A[z])) + 6 * (abs(AL[z]) + abs(AR[z]))) * 27) >> 9
                elif L and A and AL:
                    x = (13 * (abs(L[z]) + abs(A[z])) + 6 * abs(AL[z])) >> 4
                elif L and A:
                    x = abs(L[z]) + abs(A[z])
                elif L or A:
                    x = 2 * abs((L or A)[z])
                else:
                    return 10
                return min(x.bit_length(), 9)

            def bnd(X, z0, step):
                s = 0
                for t in range(1, 8):
                    z = z0 + step * t
                    s += (-1) ** t * X[z] * Q[z] - C[z] * Q[z]
                return X[z0] * Q[z0] + ((s * 11585 + 4096) >> 13)

            # 1. n7
            n7 = sum(1 for z in INTERIOR_ZZ if C[z])
            n7c = n7 if n7_override is None else n7_override
            bl = nzb(iL[0]) if iL else 0
            bu = nzb(iA[0]) if iA else 0
            bavg = nzb((iL[0] + iA[0] + 1) >> 1) if iL and iA else max(bl, bu)
            bases = [("NZ7A", (cc * 14 + bavg) * 64), ("NZ7B", (bl * 14 + bu) * 64), ("NZ7C", cc * 64)]
            enc.tree(6, bases, ("NZ7", cc * 6), n7c)
            if n7c > 49:
                return enc.finish()
            # 2. interior
            rem = n7
            for i, z in enumerate(INTERIOR_ZZ):
                if rem == 0:
                    break
                band = min(ZZ.index(z) // 5, 9)
                mb = prior(z)
                a = (abs(C[z - 8]) if z >= 16 else 0) + (abs(C[z - 1]) if z % 8 >= 2 else 0)
                ib = min(a.bit_length(), 6)
                nz_b = nrb(rem)
                if rem < 49 - i:
                    keys = [
                        ("IZ1", (band * 10 + nz_b) * 11 + mb),
                        ("IZ2", (i * 10 + nz_b) * 7 + ib),
                        ("IZ3", (band * 11 + mb) * 7 + ib),
                    ]
                    enc.mixed(keys, ("IZ", band), int(C[z] != 0), sr.stretch((rem * 4096) // (49 - i)))
                if C[z] == 0:
                    continue
                rem -= 1
                mag = abs(C[z])
                e = mag.bit_length()
                bases = [("IE1", (band * 11 + mb) * 17), ("IE2", (band * 7 + ib) * 17), ("IE3", (band * 10 + nz_b) * 17)]
                enc.exponent(bases, ("IE", 0), 1, mb - 1 if mb < 10 else None, e)
                rel = 5 if mb == 10 else min(max(mb - e + 2, 0), 4)
                enc.mantissa(e, ("MANT", rel * 36), mag)
                enc.code16(32768, int(C[z] < 0))
            # 3. edges
            ne = [0, 0]
            for edge in (0, 1):
                across = 1 if edge == 0 else 8
                X = L if edge == 0 else A
                iX = iL if edge == 0 else iA
                zs = [8 * t if edge == 0 else t for t in range(8)]
                p = [None] * 8
                if X:
                    for t in range(1, 8):
                        q = max(Q[zs[t]], 1)
                        p[t] = (2 * bnd(X, zs[t], across) + q) // (2 * q)
                n_p = sum(1 for v in p[1:] if v) if X else 8
                ne[edge] = sum(1 for t in range(1, 8) if C[zs[t]])
                bases = [
                    ("NZEA", ((edge * 7 + min(n7.bit_length(), 6)) * 9 + n_p) * 8),
                    ("NZEB", ((edge * 9 + n_p) * 9 + (iX[1][edge] if iX else 8)) * 8),
                    ("NZEC", ((cc * 2 + edge) * 14 + nzb(n7)) * 8),
                ]
                enc.tree(3, bases, ("NZE", (cc * 2 + edge) * 3), ne[edge])
                rem = ne[edge]
                for t in range(1, 8):
                    if rem == 0:
                        break
                    z = zs[t]
                    if X:
                        pt = p[t]
                        pb = 1 + min(abs(pt).bit_length(), 10)
                        hint = {0: 0, 1: 1, -1: 3}.get(pt, 2 if pt > 0 else 4)
                    else:
                        pb = hint = 0
                    mb = prior(z)
                    ib = min(abs(C[z + across]).bit_length(), 6)
                    pos = edge * 7 + t - 1
                    if rem < 8 - t:
                        keys = [
                            ("EZ1", (pos * 7 + rem - 1) * 12 + pb),
                            ("EZ2", pos * 11 + mb),
                            ("EZ3", (pos * 12 + pb) * 7 + ib),
                        ]
                        enc.mixed(keys, ("EZ", edge), int(C[z] != 0), sr.stretch((rem * 4096) // (8 - t)))
                    if C[z] == 0:
                        continue
                    rem -= 1
                    mag = abs(C[z])
                    e = mag.bit_length()
                    bases = [("EE1", (edge * 12 + pb) * 17), ("EE2", (edge * 11 + mb) * 17), ("EE3", (pos * 7 + rem) * 17)]
                    enc.exponent(bases, ("EE", edge * 17), 1, pb - 1 if X else None, e)
                    if not X:
                        rel = 0
                    else:
                        lp = abs(pt).bit_length()
                        rel = 1 if lp < e else 4 if lp > e else 3 if (e >= 2 and (abs(pt) >> (e - 2)) & 1) else 2
                    enc.mantissa(e, ("MANT", (6 + rel) * 36), mag)
                    enc.cbit(("ESIGN", edge * 5 + hint), int(C[z] < 0))
            # 4. DC
            q00 = max(Q[0], 1)
            rdiv = lambda a, q: (2 * a + q) // (2 * q)  # noqa: E731
            if L and A:
                pl, pu = bnd(L, 0, 1), bnd(A, 0, 8)
                pred, act = rdiv((pl + pu) >> 1, q00), min((abs(pl - pu) // q00).bit_length(), 12)
            elif L or A:
                pred, act = (rdiv(bnd(L, 0, 1), q00) if L else rdiv(bnd(A, 0, 8), q00)), 13
            else:
                pred, act = last, 14
            pred = min(max(pred, -32768), 32767)
            if iL and iA:
                rb = (iL[2] + iA[2] + 1) >> 1
            else:
                rb = iL[2] if iL else iA[2] if iA else 16
            rb = min(rb, 16)
            res = C[0] - pred
            e = abs(res).bit_length()
            bases = [("DC1", (cc * 15 + act) * 18), ("DC2", (cc * 14 + nzb(n7)) * 18), ("DC3", (cc * 17 + rb) * 18)]
            enc.exponent(bases, ("DC", cc * 18), 0, None, e)
            if e:
                enc.mantissa(e, ("DCM", cc * 36), abs(res))
                enc.cbit(("DCS", cc * 15 + act), int(res < 0))
            last = C[0]
            info[(bx, by)] = (n7, ne, e)
    return enc.finish()


def coder2_data(M, comps, tables, grids, **kw):
    H, W = M.shape
    sel = stored_blocks(M, W, H, comps)
    Qs = [table_values(*tables[t]) for _h, _v, t in comps]
    return encode_coder2([{k: grids[i][k] for k in sel[i]} for i in range(len(comps))], Qs, **kw)


@pytest.mark.parametrize(
    "layout, size",
    [("grey", (29, 21)), ("4:2:0", (37, 29)), ("4:4:4", (19, 13)), ("mixed", (27, 23)), ("4:2:2", (5, 12))],
)
def test_coding4_coder2_roundtrip_matches_libjpeg(layout, size):
    # The same coefficients as the Pillow comparison above, through coder 2.
    W, H = size
    comps = JPEG_LAYOUTS[layout]
    luma, chroma = ijg(K1, 80), ijg(K2, 80)
    qtables = [luma, chroma][: 1 + max(c[2] for c in comps)]
    grids = jpeg_case(W, H, comps, qtables, seed=W * 100 + H, noise=2)
    with Image.open(io.BytesIO(write_baseline_jpeg(W, H, comps, qtables, grids))) as im:
        ref = np.asarray(im.convert("L" if len(comps) == 1 else "RGB")).reshape(H, W, -1)
    tables = [(2, 80), (3, 80)][: len(qtables)]
    for M in (mask_sample(W, H, seed=W + H), np.ones((H, W), np.uint8)):
        data = coder2_data(M, comps, tables, grids)
        payload = c4_payload(W, H, comps, tables, data, coder=2)
        img = read_ppan(_file(M, payload, 3 if len(comps) == 3 else 1))
        np.testing.assert_array_equal(img.pixels[M == 1], ref[M == 1])
        # and coder 1 of the same coefficients gives the same pixels
        img1 = read_ppan(coding4_file(M, comps, tables, grids))
        np.testing.assert_array_equal(img1.pixels[M == 1], img.pixels[M == 1])


def test_coding4_coder2_extreme_values():
    # 16-bit extremes: AC −32768 (valid), DCs that jump across the range, with tables of 1s.
    W, H = 24, 16
    M = np.ones((H, W), np.uint8)
    comps = [(1, 1, 0)]
    rng = np.random.default_rng(8)
    grid = {}
    for by in range(2):
        for bx in range(3):
            C = [int(v) for v in rng.integers(-3, 4, 64) * (rng.random(64) < 0.4)]
            grid[(bx, by)] = C
    grid[(0, 0)][0] = 32767
    grid[(1, 0)][0] = -32768
    grid[(2, 1)][9] = -32768
    grid[(1, 1)][1] = 32767  # top edge coefficient
    grid[(0, 1)][8] = -20000  # left edge coefficient
    tables = [(0, [1] * 64)]
    data = coder2_data(M, comps, tables, [grid])
    img2 = read_ppan(_file(M, c4_payload(W, H, comps, tables, data, coder=2), 1))
    img1 = read_ppan(coding4_file(M, comps, tables, [grid]))
    np.testing.assert_array_equal(img2.pixels, img1.pixels)


def test_coding4_coder2_rejections():
    W, H, M, comps, grids, _S = _grey_case()
    tables = [(2, 75)]
    sel = stored_blocks(M, W, H, comps)[0]
    Q = [table_values(*tables[0])]

    def payload(blocks, **kw):
        return c4_payload(W, H, comps, tables, encode_coder2([blocks], Q, **kw), coder=2)

    good = {k: list(grids[0][k]) for k in sel}
    data = payload(good)
    read_ppan(_file(M, data, 1))
    bads = [data[:-1], data + b"\x00", data[: len(data) - len(encode_coder2([good], Q)) + 3]]
    bads.append(payload(good, n7_override=50))  # an interior count above 49
    bads.append(payload(good, n7_override=63))
    b = {k: list(v) for k, v in good.items()}
    b[sel[0]][9] = 32768  # a positive 32768 (interior)
    bads.append(payload(b))
    b = {k: list(v) for k, v in good.items()}
    b[sel[-1]][24] = 40000  # beyond 32768 (left edge)
    bads.append(payload(b))
    b = {k: list(v) for k, v in good.items()}
    b[sel[0]][0] = 40000  # a DC outside 16 bits
    bads.append(payload(b))
    for bad in bads:
        with pytest.raises(SpecError):
            read_ppan(_file(M, bad, 1))
    b = {k: list(v) for k, v in good.items()}
    b[sel[0]][9] = -32768  # valid
    read_ppan(_file(M, payload(b), 1))
