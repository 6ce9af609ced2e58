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
        + chunk(b"iccp", b"\x07junk")  # unknown method: malformed, skipped
    )
    data = build(3, S, M, B, extra_after_head=extra, extra_before_done=chunk(b"xmpd", b"\x01" + brotli.compress(xmp)))
    img = read_ppan(data + b"trailing garbage after DONE")
    assert img.metadata == {"exif": exif, "xmpd": xmp}
    assert img.chunks == ["HEAD", "exif", "zzzz", "exif", "iccp", "BGND", "MASK", "SUBJ", "xmpd", "DONE"]


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
        b"\x04" + subj2(S, M, 3)[1:],  # unknown coding (0 … 3 are defined)
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


def encode_coding3(S, M, channels, rng=None) -> bytes:
    """Payload of §6.3 for the subject values S over the mask box.

    With `rng`, a residual e is sometimes written as e ± 256 (still 1 <= |e| <= 255):
    the decoded value (pred + e) mod 256 is the same, which checks that a decoder takes
    m up to 255 and keeps E unreduced in its contexts.
    """
    x0, y0, bws, bhs = box_of(M)
    box = S[y0 : y0 + bhs, x0 : x0 + bws].astype(int)
    mb = M[y0 : y0 + bhs, x0 : x0 + bws]
    if channels == 1:
        planes = [box[:, :, 0]]
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
                if not mb[j, i]:
                    V[p, j + 1, i + 1] = pred
                    continue
                eW, eN, eNW, eNE = e_(-1, 0), e_(0, -1), e_(-1, -1), e_(1, -1)
                act = abs(w_ - nw) + abs(n_ - nw) + abs(n_ - ne) + abs(eW) + abs(eN) + abs(eNW) + abs(eNE)
                q = sum(act >= t for t in thresholds)
                colour = channels > 1 and p in (1, 2)
                t = ((w_ == nw) + 2 * (n_ == nw)) if colour else 0
                u = sgn3(int(E[1, j + 1, i + 1])) if channels > 1 and p == 2 else 0
                ctx = q + 9 * (t + 4 * u)
                sctx = 3 * sgn3(eW) + sgn3(eN) + 9 * sgn3(eNE + eNW) + 27 * u
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
                V[p, j + 1, i + 1] = (pred + e) % 256
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
