"""JPEG input (peterpan_format.jpeg): bit-exact decoding against Pillow, subject payloads."""

from __future__ import annotations

import io
import struct
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_boundschecked
from peterpan_format.jpeg import (
    decode_jpeg_subject,
    encode_jpeg_subject,
    jpeg_pixels,
    read_jpeg,
)
from peterpan_format._kernels import threads as kernel_threads
from peterpan_format.jpeg import payload as jpayload
from peterpan_format.jpeg.parser import layout
from peterpan_format.jpeg.pixels import render
from peterpan_format.jpeg.select import kept_blocks
from peterpan_format.jpeg.writer import forward_dct, write_jpeg
from peterpan_format.masking import box_of
from spec_reader import _decode_coding4

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "segmentation"
PHOTO_IDS = ["ccp_0741", "hsd-232", "cat_group0421_jpeg", "camvid_0016E5_05460"]


def pillow_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        a = np.asarray(im)
    return a[:, :, None] if a.ndim == 2 else a


def synthetic_image(w: int, h: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Smooth gradients with noise: every coefficient band gets work."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * (3 + c) + y * (5 - c)) % 256 for c in range(3)], 2).astype(float)
    a = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(a).convert(mode)


def pillow_jpeg(w, h, mode="RGB", seed=0, **kw) -> bytes:
    out = io.BytesIO()
    synthetic_image(w, h, mode, seed).save(out, "JPEG", **kw)
    return out.getvalue()


def crafted_jpeg(w, h, sampling, seed=0, qscale=3, **kw) -> bytes:
    """A baseline JPEG of any sampling from our writer (Pillow cannot make these)."""
    rng = np.random.default_rng(seed)
    comps = layout(w, h, sampling)
    qs = [np.full(64, 2, np.uint16), (np.arange(1, 65) * qscale).astype(np.uint16)]
    blocks = []
    for c in comps:
        hh, ww = c.rows * 8, c.stride * 8
        y, x = np.mgrid[0:hh, 0:ww]
        p = 128 + 60 * np.sin(x / 7.0 + c.ident) + 40 * np.cos(y / 5.0) + rng.normal(0, 20, (hh, ww))
        blocks.append(forward_dct(np.clip(p, 0, 255), qs[min(c.ident, 1)]))
    return write_jpeg(w, h, sampling, qs, blocks, **kw)


def assert_same_as_pillow(data: bytes) -> None:
    ref = pillow_pixels(data)
    got = jpeg_pixels(data)
    assert got.shape == ref.shape
    assert np.array_equal(got, ref), f"{int((got != ref).sum())} samples differ"


# ---------------------------------------------------------------- full decode == Pillow

SIZES = [(1, 1), (17, 9), (33, 35), (64, 48), (3, 2), (2, 5), (100, 37)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("progressive", [False, True])
def test_pillow_colour_matrix(size, progressive):
    for quality in (20, 75, 95, 100):
        for subsampling in (0, 1, 2):
            data = pillow_jpeg(*size, quality=quality, subsampling=subsampling, progressive=progressive)
            assert_same_as_pillow(data)


@pytest.mark.parametrize("size", SIZES)
def test_pillow_grey(size):
    for quality in (20, 90):
        for progressive in (False, True):
            assert_same_as_pillow(pillow_jpeg(*size, "L", quality=quality, progressive=progressive))


@pytest.mark.parametrize(
    "restart",
    [{"restart_marker_blocks": 1}, {"restart_marker_blocks": 3}, {"restart_marker_rows": 1}, {"restart_marker_rows": 2}],
)
def test_pillow_restart_intervals(restart):
    for size in [(17, 9), (130, 71)]:
        for subsampling in (0, 2):
            for progressive in (False, True):
                data = pillow_jpeg(*size, quality=80, subsampling=subsampling, progressive=progressive, **restart)
                assert b"\xff\xdd" in data
                assert_same_as_pillow(data)


def test_pillow_optimized_tables():
    assert_same_as_pillow(pillow_jpeg(130, 71, quality=85, optimize=True))


SAMPLINGS = [
    [(1, 1), (1, 1), (1, 1)],
    [(2, 1), (1, 1), (1, 1)],
    [(1, 2), (1, 1), (1, 1)],  # 4:4:0
    [(2, 2), (1, 1), (1, 1)],
    [(4, 1), (1, 1), (1, 1)],  # 4:1:1 (replication)
    [(3, 1), (1, 1), (1, 1)],  # 3:1 (replication)
    [(2, 2), (2, 1), (1, 2)],  # mixed ratios
    [(1, 1), (2, 2), (1, 1)],  # chroma larger than luma
    [(2, 2)],  # a lone component is never subsampled
]


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_crafted_samplings(sampling):
    for w, h in [(1, 1), (3, 3), (5, 9), (17, 9), (40, 31)]:
        assert_same_as_pillow(crafted_jpeg(w, h, sampling))


@pytest.mark.parametrize(
    "kw",
    [
        {"interleaved": False},
        {"restart_interval": 2},
        {"marker": "adobe", "adobe_transform": 0},  # RGB
        {"marker": "adobe", "adobe_transform": 1},
        {"marker": "none", "idents": [82, 71, 66]},  # RGB by component ids
        {"marker": "none", "idents": [9, 8, 7]},  # YCbCr by default
    ],
)
def test_crafted_variants(kw):
    for sampling in SAMPLINGS[:4]:
        assert_same_as_pillow(crafted_jpeg(23, 19, sampling, **kw))


def shared_photo(photo_id: str) -> tuple[bytes, np.ndarray]:
    path = SHARED / "images" / f"{photo_id}.jpg"
    if not path.exists():
        pytest.skip(f"shared data not found at {SHARED}")
    with Image.open(SHARED / "masks" / f"{photo_id}.png") as m:
        mask = np.asarray(m) > 0
    return path.read_bytes(), mask


@pytest.mark.parametrize("photo_id", PHOTO_IDS)
def test_shared_photos(photo_id):
    data, mask = shared_photo(photo_id)
    assert_same_as_pillow(data)
    ref = pillow_pixels(data)
    for coder in ("brotli", "arith"):
        payload = encode_jpeg_subject(data, mask, coder=coder)
        assert payload[0] == jpayload.CODERS[coder]
        got = decode_jpeg_subject(payload, mask)
        x0, y0, w, h = box_of(mask)
        sel = mask[y0 : y0 + h, x0 : x0 + w]
        assert np.array_equal(got[sel], ref[y0 : y0 + h, x0 : x0 + w][sel])
        assert len(payload) < len(data)


# ---------------------------------------------------------------- subject payloads


def random_masks(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    blob = ((yy - h * rng.uniform(0.2, 0.8)) / (h / 3 + 1)) ** 2 + ((xx - w * rng.uniform(0.2, 0.8)) / (w / 3 + 1)) ** 2 <= 1
    noise = rng.random((h, w)) < 0.05
    single = np.zeros((h, w), bool)
    single[rng.integers(h), rng.integers(w)] = True
    corner = np.zeros((h, w), bool)
    corner[h - 1, w - 1] = True
    return [blob, noise, single, corner, np.ones((h, w), bool)]


SUBJECT_CASES = [
    ("pillow", dict(size=(61, 47), subsampling=2)),
    ("pillow", dict(size=(61, 47), subsampling=1, progressive=True)),
    ("pillow", dict(size=(33, 18), subsampling=0, restart_marker_blocks=2)),
    ("pillow-grey", dict(size=(29, 35))),
    ("crafted", dict(size=(37, 29), sampling=[(1, 2), (1, 1), (1, 1)])),
    ("crafted", dict(size=(37, 29), sampling=[(4, 1), (1, 1), (1, 1)])),
    ("crafted", dict(size=(37, 29), sampling=[(2, 2), (2, 1), (1, 2)], marker="adobe", adobe_transform=0)),
    ("crafted", dict(size=(4, 3), sampling=[(2, 2), (1, 1), (1, 1)])),  # non-fancy upsampling
]


CODERS = ("brotli", "arith", "segments")  # "segments": coder 3 with as many as the encoder allows


def encode_with(data, mask, coder, **kw):
    if coder != "segments":
        return encode_jpeg_subject(data, mask, coder=coder, **kw)
    with jpayload.segments_of(1):
        return encode_jpeg_subject(data, mask, coder="arith", **kw)


def make_case(kind, params):
    params = dict(params)
    size = params.pop("size")
    if kind == "pillow":
        return pillow_jpeg(*size, quality=85, **params)
    if kind == "pillow-grey":
        return pillow_jpeg(*size, "L", quality=85, **params)
    sampling = params.pop("sampling")
    return crafted_jpeg(*size, sampling, **params)


@pytest.mark.parametrize("kind,params", SUBJECT_CASES)
def test_subject_round_trip(kind, params):
    data = make_case(kind, params)
    ref = pillow_pixels(data)
    rng = np.random.default_rng(7)
    for mask in random_masks(rng, *ref.shape[:2]):
        for coder in CODERS:
            payload = encode_with(data, mask, coder, verify=False)
            got = decode_jpeg_subject(payload, mask)
            x0, y0, w, h = box_of(mask)
            assert got.shape == (h, w, ref.shape[2])
            sel = mask[y0 : y0 + h, x0 : x0 + w]
            assert np.array_equal(got[sel], ref[y0 : y0 + h, x0 : x0 + w][sel])
            assert not got[~sel].any()  # the box's other pixels are 0


def test_segments_cut_evenly_and_decode_alike_on_any_thread_count(monkeypatch):
    data = pillow_jpeg(48, 160, quality=90)  # 4:2:0: 10 MCU rows
    mask = np.zeros((160, 48), bool)
    mask[20:150, 8:40] = True
    with jpayload.segments_of(1):
        payload = encode_jpeg_subject(data, mask, coder="arith")
    assert payload[0] == jpayload.ARITH_SEGMENTS
    head = jpayload.Header(payload, mask.shape)
    count = head.data[0]
    starts = struct.unpack_from(f">{count - 1}H", head.data, 1)
    # 16 asked for, but the subject spans 9 of the 10 MCU rows: at most one cut per row
    assert 2 <= count <= 9 and list(starts) == sorted(set(starts)) and 0 < starts[0] and starts[-1] < 10
    outs = []
    for threads in (1, 2, 5):
        monkeypatch.setattr(kernel_threads, "cpus", lambda threads=threads: threads)
        outs.append(decode_jpeg_subject(payload, mask))
    assert all(np.array_equal(outs[0], o) for o in outs[1:])
    ref = pillow_pixels(data)[20:150, 8:40]
    assert np.array_equal(outs[0], ref)


def test_one_segment_is_coder_2_with_a_table():
    """Coder 3 with S = 1 holds coder 2's stream after a 5-byte table and decodes alike."""
    data = pillow_jpeg(40, 30, quality=85)
    mask = random_masks(np.random.default_rng(4), 30, 40)[0]
    plain = encode_jpeg_subject(data, mask, coder="arith")
    head = jpayload.Header(plain, mask.shape)
    at = len(plain) - len(head.data)
    one = bytes([3]) + plain[1:at] + struct.pack(">BI", 1, len(head.data)) + head.data
    assert np.array_equal(decode_jpeg_subject(one, mask), decode_jpeg_subject(plain, mask))


def test_auto_coder_picks_the_smaller():
    data = pillow_jpeg(64, 48, quality=90)
    mask = random_masks(np.random.default_rng(1), 48, 64)[0]
    sizes = {c: len(encode_jpeg_subject(data, mask, coder=c)) for c in ("brotli", "arith")}
    assert len(encode_jpeg_subject(data, mask)) == min(sizes.values())


def test_empty_mask():
    data = pillow_jpeg(20, 10)
    mask = np.zeros((10, 20), bool)
    for coder in ("brotli", "arith"):
        out = decode_jpeg_subject(encode_jpeg_subject(data, mask, coder=coder), mask)
        assert out.shape == (0, 0, 3)


def test_kept_blocks_is_sufficient_with_garbage_elsewhere():
    """Subject pixels never depend on a block the selection drops, whatever it holds."""
    rng = np.random.default_rng(3)
    for sampling in [[(2, 2), (1, 1), (1, 1)], [(2, 1), (1, 1), (1, 1)], [(1, 2), (1, 1), (1, 1)]]:
        data = crafted_jpeg(45, 38, sampling)
        img = read_jpeg(data)
        ref = pillow_pixels(data)
        for mask in random_masks(rng, 38, 45)[:4]:
            keep = kept_blocks(mask, img.components)
            blocks = []
            for ci, k in enumerate(keep):
                real = img.blocks(ci).reshape(-1, 64)
                garbage = rng.integers(-300, 300, real.shape).astype(np.int16)
                coef = np.concatenate([real, garbage])
                index = np.arange(real.shape[0], dtype=np.int32).reshape(k.shape)
                index[~k] += real.shape[0]  # dropped blocks point at garbage
                blocks.append((coef, index))
            got = render(img.components, img.colour, img.qtables, blocks, (0, 0, 45, 38), mask)
            assert np.array_equal(got[mask], ref[mask])


def test_kept_blocks_is_tight_for_420():
    comps = layout(64, 64, [(2, 2), (1, 1), (1, 1)])
    mask = np.zeros((64, 64), bool)
    mask[0, 0] = True  # chroma sample 0 only
    assert [int(k.sum()) for k in kept_blocks(mask, comps)] == [1, 1, 1]
    mask[:] = False
    mask[17, 17] = True  # samples 8 and 9 in each direction: chroma block 1
    assert [int(k.sum()) for k in kept_blocks(mask, comps)] == [1, 1, 1]
    mask[:] = False
    mask[16, 16] = True  # samples 7 and 8: chroma blocks 0 and 1 in each direction
    assert [int(k.sum()) for k in kept_blocks(mask, comps)] == [1, 4, 4]


@pytest.mark.parametrize("sampling", [[(1, 1)], [(2, 2), (1, 1), (1, 1)], [(2, 1), (1, 1), (1, 1)],
                                      [(1, 2), (1, 1), (1, 1)], [(4, 1), (1, 1), (1, 1)],
                                      [(2, 2), (2, 1), (1, 2)], [(3, 1), (1, 1), (1, 1)]])
def test_kept_blocks_match_the_spec_reader(sampling):
    """The window around the box selects what the spec's rule selects on the whole frame:
    single pixels everywhere near the edges and MCU boundaries, and random blobs."""
    from spec_reader import C4Component, _select_blocks

    rng = np.random.default_rng(len(sampling) * 10 + sampling[0][0] * 3 + sampling[0][1])
    for w, h in [(45, 38), (48, 32), (17, 9), (70, 66)]:
        comps = layout(w, h, sampling)
        masks = []
        for x in sorted({0, 1, 7, 8, 15, 16, 17, 23, 24, w // 2, w - 2, w - 1} & set(range(w))):
            for y in sorted({0, 1, 15, 16, h - 2, h - 1} & set(range(h))):
                one = np.zeros((h, w), np.uint8)
                one[y, x] = 1
                masks.append(one)
        masks += [(rng.random((h, w)) < 0.02).astype(np.uint8) for _ in range(5)]
        for mask in masks:
            got = kept_blocks(mask, comps)
            for c, kept in zip(comps, got):
                ref = C4Component(c.h, c.v, 0)
                ref.dw, ref.dh, ref.nbx, ref.nby = c.dw, c.dh, c.nbx, c.nby
                ref.rh, ref.rv = max(h for h, _ in sampling) // c.h, max(v for _, v in sampling) // c.v
                want = np.zeros_like(kept)
                for bx, by in _select_blocks(ref, mask):
                    want[by, bx] = True
                assert np.array_equal(kept, want), (w, h, c)


def test_ijg_tables_are_stored_as_a_quality():
    data = pillow_jpeg(32, 32, quality=90)
    payload = encode_jpeg_subject(data, np.ones((32, 32), bool), coder="brotli")
    head = jpayload.Header(payload, (32, 32))
    assert np.array_equal(head.qtables, read_jpeg(data).qtables)
    assert payload[13:18] == bytes([2, jpayload.Q_IJG_LUMA, 90, jpayload.Q_IJG_CHROMA, 90])


# ---------------------------------------------------------------- unsupported JPEGs


def replace_sof(data: bytes, marker: int) -> bytes:
    i = data.index(b"\xff\xc0")
    return data[:i + 1] + bytes([marker]) + data[i + 2 :]


def test_unsupported_kinds_raise_value_error():
    base = pillow_jpeg(16, 16)
    cases = {
        "arithmetic": replace_sof(base, 0xC9),
        "lossless": replace_sof(base, 0xC3),
        "hierarchical": replace_sof(base, 0xC5),
    }
    i = base.index(b"\xff\xc0")
    twelve = bytearray(base)
    twelve[i + 4] = 12
    cases["12-bit"] = bytes(twelve)
    cmyk = io.BytesIO()
    Image.new("CMYK", (16, 16), (1, 2, 3, 4)).save(cmyk, "JPEG")
    cases["cmyk"] = cmyk.getvalue()
    cases["fractional sampling"] = crafted_jpeg(16, 16, [(3, 1), (2, 1), (1, 1)])
    for name, data in cases.items():
        with pytest.raises(ValueError, match="unsupported JPEG"):
            read_jpeg(data)
        with pytest.raises(ValueError):
            encode_jpeg_subject(data, np.ones((16, 16), bool))


def test_progressive_with_unrefined_coefficients_is_refused():
    """libjpeg-turbo would apply block smoothing, which we do not reproduce."""
    data = pillow_jpeg(64, 48, progressive=True)
    scans = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xDA]
    cut = data[: scans[3]] + b"\xff\xd9"  # only the first scans (DC and low AC, coarse)
    with pytest.raises(ValueError, match="smoothing"):
        read_jpeg(cut)


def test_unreproducible_coefficients_are_refused():
    """Coefficients far outside what a DCT of 8-bit samples gives: libjpeg-turbo's C and SIMD
    paths disagree with each other there, so the encoder's check against Pillow decides."""
    rng = np.random.default_rng(4)
    comps = layout(40, 32, [(1, 1)])
    blocks = [(rng.integers(-1000, 1000, (c.rows, c.stride, 64)) * (rng.random((c.rows, c.stride, 64)) < 0.05))
              .astype(np.int16) for c in comps]
    data = write_jpeg(40, 32, [(1, 1)], [np.full(64, 8, np.uint16)], blocks)
    mask = np.ones((32, 40), bool)
    try:
        payload = encode_jpeg_subject(data, mask)
    except ValueError as exc:
        assert "Pillow" in str(exc)
    else:
        assert np.array_equal(decode_jpeg_subject(payload, mask), pillow_pixels(data))


def test_malformed_jpegs_raise_value_error():
    data = pillow_jpeg(40, 30, quality=90)
    for cut in (0, 1, 2, 10, 100, len(data) // 2, len(data) - 3):
        with pytest.raises(ValueError):
            read_jpeg(data[:cut])
    with pytest.raises(ValueError):
        read_jpeg(b"\xff\xd8" + bytes(100))
    with pytest.raises(ValueError):
        encode_jpeg_subject(data, np.ones((29, 40), bool))  # wrong mask size


# ---------------------------------------------------------------- malformed payloads


@pytest.fixture(scope="module")
def payloads():
    data = pillow_jpeg(30, 22, quality=80)
    mask = random_masks(np.random.default_rng(2), 22, 30)[0]
    by_coder = {c: encode_with(data, mask, c) for c in CODERS}
    assert by_coder["segments"][0] == jpayload.ARITH_SEGMENTS
    assert jpayload.Header(by_coder["segments"], mask.shape).data[0] == 2  # 2 MCU rows
    return mask, by_coder


def decodes_or_oserror(payload, mask):
    try:
        out = decode_jpeg_subject(payload, mask)
    except OSError:
        return False
    x0, y0, w, h = box_of(mask)
    assert out.shape[:2] == (h, w)
    return True


def test_truncated_payloads(payloads):
    mask, by_coder = payloads
    for payload in by_coder.values():
        for n in range(len(payload)):
            with pytest.raises(OSError):
                decode_jpeg_subject(payload[:n], mask)
        with pytest.raises(OSError):
            decode_jpeg_subject(payload + b"\x00", mask)


def test_corrupted_payloads_raise_only_oserror(payloads):
    mask, by_coder = payloads
    rng = np.random.default_rng(5)
    for payload in by_coder.values():
        for _ in range(300):
            bad = bytearray(payload)
            for _ in range(rng.integers(1, 4)):
                bad[rng.integers(len(bad))] ^= 1 << rng.integers(8)
            decodes_or_oserror(bytes(bad), mask)
        for _ in range(50):
            decodes_or_oserror(rng.integers(0, 256, rng.integers(0, 80), dtype=np.uint8).tobytes(), mask)


@pytest.mark.parametrize(
    "offset,value",
    [(0, 0), (0, 3), (0, 4), (2, 31), (4, 0), (5, 2), (6, 2), (6, 4), (7, 0x00), (7, 0x55), (8, 7), (13, 0), (13, 9),
     (14, 9), (15, 0), (15, 101)],
)
def test_bad_header_fields(payloads, offset, value):
    mask, by_coder = payloads
    bad = bytearray(by_coder["brotli"])
    bad[offset] = value
    with pytest.raises(OSError):
        decode_jpeg_subject(bytes(bad), mask)


def test_mask_shape_mismatch_is_oserror(payloads):
    mask, by_coder = payloads
    with pytest.raises(OSError):
        decode_jpeg_subject(by_coder["arith"], mask[:-1])


# ---------------------------------------------------------------- kernels under bounds checking

BOUNDS_SCRIPT = textwrap.dedent(
    """
    import io
    import numpy as np
    from PIL import Image
    from peterpan_format.jpeg import decode_jpeg_subject, encode_jpeg_subject, jpeg_pixels
    from peterpan_format._kernels import jpeg_coder, jpeg_huffman, jpeg_idct

    rng = np.random.default_rng(11)
    jpegs = []
    for kw in [dict(), dict(progressive=True), dict(subsampling=0, restart_marker_blocks=2)]:
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (21, 27, 3), dtype=np.uint8)).save(out, "JPEG", **kw)
        jpegs.append(out.getvalue())
    for data in jpegs:
        jpeg_pixels(data)
        for _ in range(150):
            bad = bytearray(data)
            for _ in range(rng.integers(1, 6)):
                bad[rng.integers(len(bad))] = rng.integers(256)
            for candidate in (bytes(bad), data[: rng.integers(len(data))]):
                try:
                    jpeg_pixels(candidate)
                except ValueError:
                    pass

    mask = rng.random((21, 27)) < 0.3
    for coder in ("brotli", "arith"):
        payload = encode_jpeg_subject(jpegs[0], mask, coder=coder)
        for _ in range(200):
            bad = bytearray(payload)
            bad[rng.integers(len(bad))] ^= 1 << rng.integers(8)
            for candidate in (bytes(bad), payload[: rng.integers(len(payload))]):
                try:
                    decode_jpeg_subject(candidate, mask)
                except OSError:
                    pass

    # The kernels directly, with inconsistent parameters.
    data = np.frombuffer(jpegs[0], np.uint8)
    luts = np.zeros((8, 65536), np.int32)
    luts[:, :] = (1 << 8) | 3
    for _ in range(200):
        coef = np.zeros((rng.integers(0, 40), 64), np.int16)
        comps = rng.integers(-2, 30, (rng.integers(0, 5), 8)).astype(np.int64)
        params = rng.integers(-2, 70, 8).astype(np.int64)
        jpeg_huffman.decode_scan(data, int(rng.integers(-5, len(data) + 5)), coef, comps, luts, params)
        index = rng.integers(-1, 45, (rng.integers(1, 5), rng.integers(1, 5))).astype(np.int32)
        plane = np.zeros((8 * rng.integers(1, 4), 8 * rng.integers(1, 4)), np.uint8)
        q = rng.integers(0, 65536, 64).astype(np.uint16)
        jpeg_idct.idct_blocks(coef, index, q, plane, int(rng.integers(-3, 3)), int(rng.integers(-3, 3)))
        out = np.zeros((rng.integers(1, 6), rng.integers(1, 6), 3), np.uint8)
        info = rng.integers(-2, 40, (3, 9)).astype(np.int64)
        sel = np.ones(out.shape[:2], np.uint8)
        jpeg_idct.upsample_convert(out, sel, plane.ravel().copy(), info, int(rng.integers(-5, 40)),
                                   int(rng.integers(-5, 40)), 1)
        cindex = rng.integers(-1, 45, rng.integers(1, 30)).astype(np.int32)
        ccomps = rng.integers(-2, 8, (rng.integers(0, 4), 5)).astype(np.int64)
        qts = rng.integers(0, 300, (rng.integers(1, 3), 64)).astype(np.uint16)
        jpeg_coder.decode_segments([rng.integers(0, 256, rng.integers(0, 60), dtype=np.uint8).tobytes()],
                                   coef, cindex, [ccomps], qts)

    # upsample_convert with windows that nearly fit: one field off, or the box leaving the image.
    for _ in range(3000):
        W, H = int(rng.integers(1, 30)), int(rng.integers(1, 30))
        info, total = [], 0
        for c in range(3):
            rh, rv = (1, 1) if c == 0 else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
            dw, dh = -(-W // rh), -(-H // rv)
            info.append([total, dw, 0, 0, dw, dh, rh, rv, int(rh == 2 and dw > 2)])
            total += dw * dh
        info = np.array(info, np.int64)
        if rng.random() < 0.5:
            info[rng.integers(3), rng.integers(9)] += rng.integers(-3, 4)
        out = np.zeros((rng.integers(1, 12), rng.integers(1, 12), 3), np.uint8)
        plane = np.zeros(max(total + int(rng.integers(-3, 3)), 0), np.uint8)
        jpeg_idct.upsample_convert(out, np.ones(out.shape[:2], np.uint8), plane, info,
                                   int(rng.integers(-3, W + 3)), int(rng.integers(-3, H + 3)), 1)
    print("ok")
    """
)


def test_kernels_in_bounds_with_boundscheck(tmp_path):
    run_boundschecked(BOUNDS_SCRIPT, tmp_path)



# ---------------------------------------------------------------- the spec-only reader agrees


def spec_decode(payload: bytes, mask: np.ndarray) -> np.ndarray:
    """The subject box's pixels as tests/spec_reader.py (§6.4, written from the spec) decodes them."""
    h, w = mask.shape
    channels = 1 if payload[6] == 1 else 3
    pixels = _decode_coding4(payload, {"width": w, "height": h, "channels": channels}, mask != 0)
    x0, y0, bw, bh = box_of(mask)
    return np.where((mask != 0)[:, :, None], pixels, 0)[y0 : y0 + bh, x0 : x0 + bw]


@pytest.mark.parametrize("kind,params", SUBJECT_CASES)
def test_spec_reader_agrees(kind, params):
    data = make_case(kind, params)
    ref = pillow_pixels(data)
    masks = random_masks(np.random.default_rng(9), *ref.shape[:2])
    for mask in (masks[0], masks[1]):
        x0, y0, w, h = box_of(mask)
        inside = mask[y0 : y0 + h, x0 : x0 + w, None] != 0
        for coder in CODERS:
            payload = encode_with(data, mask, coder, verify=False)
            ours = np.where(inside, decode_jpeg_subject(payload, mask), 0)
            assert np.array_equal(spec_decode(payload, mask), ours)


def test_auto_coder_is_the_smaller_of_both():
    """The Brotli estimates (qualities 1, 9) only skip quality 11 where it loses: "auto" is as
    small as the smaller of the coders on crafted JPEGs and masks of every size."""
    rng = np.random.default_rng(11)
    for w, h, sampling in [(45, 38, [(2, 2), (1, 1), (1, 1)]), (120, 90, [(1, 1), (1, 1), (1, 1)]),
                           (200, 160, [(2, 1), (1, 1), (1, 1)])]:
        img = read_jpeg(crafted_jpeg(w, h, sampling))
        for mask in random_masks(rng, h, w)[:3]:
            if not mask.any():
                continue
            sizes = [len(jpayload.build(img, mask, coder)) for coder in ("auto", "brotli", "arith")]
            assert sizes[0] == min(sizes[1:])
