"""Numba kernels against straightforward references written from spec/FORMAT.md."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from peterpan_format._kernels import blend, predict, resample, rle
from peterpan_format.masking import box_of

SPEC = Path(__file__).resolve().parents[1] / "spec" / "FORMAT.md"
RNG_SEED = 20240611


@pytest.fixture
def rng():
    return np.random.default_rng(RNG_SEED)


def random_mask(rng, h, w, kind):
    if kind == "empty":
        return np.zeros((h, w), np.uint8)
    if kind == "full":
        return np.ones((h, w), np.uint8)
    if kind == "noise":
        return (rng.random((h, w)) < 0.5).astype(np.uint8)
    # "blob": a filled ellipse, the usual shape of a subject
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ry, rx = rng.uniform(1, h / 2 + 1), rng.uniform(1, w / 2 + 1)
    return ((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) <= 1).astype(np.uint8)


MASK_KINDS = ["empty", "full", "noise", "blob"]
SHAPES = [(1, 1), (1, 7), (5, 1), (3, 4), (7, 5), (16, 16), (13, 29)]


# ---------------------------------------------------------------- references (from the spec)


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ref_encode_mask(mask):
    out = bytearray()
    for row in mask:
        runs, cur, n = [], 0, 0
        for v in row:
            if int(v != 0) == cur:
                n += 1
            else:
                runs.append(n)
                cur, n = 1 - cur, 1
        runs.append(n)
        for r in runs:
            out += varint(r)
    return bytes(out)


def ref_decode_mask(data, width, height):
    """Returns (mask, status) with the status codes of rle.MASK_ERRORS' meanings."""
    mask = np.zeros((height, width), np.uint8)
    pos = 0

    def read():
        nonlocal pos
        v = 0
        for i in range(5):
            if pos >= len(data):
                return None, rle.ERR_TRUNCATED
            b = data[pos]
            pos += 1
            v |= (b & 0x7F) << (7 * i)
            if b < 0x80:
                canonical = b != 0 or i == 0
                return (v, 0) if v < 2**32 and canonical else (None, rle.ERR_VARINT)
        return None, rle.ERR_VARINT

    for y in range(height):
        x, i = 0, 0
        while i == 0 or x < width:
            v, err = read()
            if err:
                return mask, err
            if v == 0 and i > 0:
                return mask, rle.ERR_ZERO_RUN
            if x + v > width:
                return mask, rle.ERR_RUN_PAST_ROW
            if i % 2:
                mask[y, x : x + v] = 1
            x += v
            i += 1
    return mask, (rle.ERR_TRAILING if pos != len(data) else 0)


def ref_area_downsample(img, s, mask=None):
    h, w, c = img.shape
    mask = np.zeros((h, w), bool) if mask is None else mask.astype(bool)
    out = np.zeros((-(-h // s), -(-w // s), c), np.uint8)
    for by in range(out.shape[0]):
        for bx in range(out.shape[1]):
            block = img[by * s : by * s + s, bx * s : bx * s + s].astype(np.int64)
            back = ~mask[by * s : by * s + s, bx * s : bx * s + s]
            pixels = block[back] if back.any() else block.reshape(-1, c)
            out[by, bx] = (pixels.sum(axis=0) + len(pixels) // 2) // len(pixels)
    return out


def spec_table():
    """{s: [(j, o, w0, w1, w2, w3), ...]} parsed from the normative table of §8.1."""
    table = {}
    row = re.compile(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|" + r"\s*(-?\d+)\s*\|" * 5 + r"\s*$")
    for line in SPEC.read_text().splitlines():
        m = row.match(line)
        if m:
            s, j, o, *w = map(int, m.groups())
            table.setdefault(s, []).append((j, o, *w))
    assert sorted(table) == list(range(1, 9))
    assert all([r[0] for r in table[s]] == list(range(s)) for s in table)
    return table


TABLE = spec_table()


def ref_upsample(small, s, width, height, clamp=True):
    """§8.1 from the parsed table: per-coordinate taps, exact horizontal then vertical pass."""
    bh, bw, _ = small.shape

    def taps(n_out, n_src):
        idx = np.zeros((n_out, 4), np.int64)
        wts = np.zeros((n_out, 4), np.int64)
        for x in range(n_out):
            k, j = divmod(x, s)
            _, o, *w = TABLE[s][j]
            for t in range(4):
                idx[x, t] = min(max(k + o + t, 0), n_src - 1)
                wts[x, t] = w[t]
        return idx, wts

    ix, wx = taps(width, bw)
    iy, wy = taps(height, bh)
    b = small.astype(np.int64)
    tmp = sum(wx[None, :, t, None] * b[:, ix[:, t], :] for t in range(4))
    acc = sum(wy[:, t, None, None] * tmp[iy[:, t], :, :] for t in range(4))
    raw = (acc + 2**23) >> 24
    return np.clip(raw, 0, 255).astype(np.uint8) if clamp else raw


def ref_feather(out, up, mask, radius):
    """§8.3 literally, over the whole image, as a new array."""
    if radius == 0:
        return out.copy()
    h, w = mask.shape
    inf = 10**9
    d = [[0 if mask[y, x] else inf for x in range(w)] for y in range(h)]
    src = [[(y, x) for x in range(w)] for y in range(h)]

    def relax(y, x, nbrs):
        for dy, dx, cost in nbrs:
            qy, qx = y + dy, x + dx
            if 0 <= qy < h and 0 <= qx < w and d[qy][qx] + cost < d[y][x]:
                d[y][x] = d[qy][qx] + cost
                src[y][x] = src[qy][qx]

    for y in range(h):
        for x in range(w):
            relax(y, x, [(-1, -1, 4), (-1, 0, 3), (-1, 1, 4), (0, -1, 3)])
    for y in reversed(range(h)):
        for x in reversed(range(w)):
            relax(y, x, [(1, 1, 4), (1, 0, 3), (1, -1, 4), (0, 1, 3)])
    big_r = 3 * (radius + 1)
    res = out.copy()
    for y in range(h):
        for x in range(w):
            if mask[y, x] or d[y][x] >= big_r:
                continue
            qy, qx = src[y][x]
            wgt = big_r - d[y][x]
            for c in range(out.shape[2]):
                e = int(out[qy, qx, c]) - int(up[qy, qx, c])
                v = int(up[y, x, c]) + (2 * e * wgt + big_r) // (2 * big_r)
                res[y, x, c] = min(max(v, 0), 255)
    return res


def planes(pixels):
    p = pixels.astype(np.int64)
    if p.shape[2] == 1:
        return [p[..., 0]]
    g = p[..., 1]
    out = [g, (p[..., 0] - g) % 256, (p[..., 2] - g) % 256]
    return out + ([p[..., 3]] if p.shape[2] == 4 else [])


def med_pred(rec, y, x):
    if x == 0 and y == 0:
        return 0
    if y == 0:
        return rec[y][x - 1]
    if x == 0:
        return rec[y - 1][x]
    a, b, c = rec[y][x - 1], rec[y - 1][x], rec[y - 1][x - 1]
    if c >= max(a, b):
        return min(a, b)
    if c <= min(a, b):
        return max(a, b)
    return a + b - c


def ref_med_encode(pixels, mask):
    h, w, _ = pixels.shape
    out = []
    for plane in planes(pixels):
        rec = [[0] * w for _ in range(h)]
        for y in range(h):
            for x in range(w):
                pred = med_pred(rec, y, x)
                if mask[y, x]:
                    v = int(plane[y, x])
                    e = (v - pred) % 256
                    e = e - 256 if e >= 128 else e
                    out.append(2 * e if e >= 0 else -2 * e - 1)
                    rec[y][x] = v
                else:
                    rec[y][x] = pred
    return np.array(out, np.uint8)


def ref_med_decode(res, mask, channels):
    h, w = mask.shape
    res = iter(int(z) for z in res)
    pl = []
    for _ in range(channels):
        rec = [[0] * w for _ in range(h)]
        for y in range(h):
            for x in range(w):
                pred = med_pred(rec, y, x)
                if mask[y, x]:
                    z = next(res)
                    pred += z >> 1 if z % 2 == 0 else -((z + 1) >> 1)
                rec[y][x] = pred % 256
        pl.append(np.array(rec, np.int64).reshape(h, w))
    if channels == 1:
        return pl[0][..., None].astype(np.uint8)
    g = pl[0]
    chans = [(pl[1] + g) % 256, g, (pl[2] + g) % 256] + pl[3:]
    return np.stack(chans, axis=-1).astype(np.uint8)


# ---------------------------------------------------------------- rle


@pytest.mark.parametrize("shape", SHAPES + [(2, 300)])
@pytest.mark.parametrize("kind", MASK_KINDS)
def test_mask_round_trip(rng, shape, kind):
    mask = random_mask(rng, *shape, kind)
    runs = rle.encode_mask(mask)
    assert runs.dtype == np.uint8 and runs.ndim == 1
    assert bytes(runs) == ref_encode_mask(mask)
    assert len(runs) <= shape[0] * (shape[1] + 1)
    out, status = rle.decode_mask(runs, shape[1], shape[0])
    assert status == 0
    assert out.dtype == np.uint8 and np.array_equal(out, mask)
    ref, ref_status = ref_decode_mask(bytes(runs), shape[1], shape[0])
    assert ref_status == 0 and np.array_equal(ref, mask)


def test_encode_mask_known_stream():
    mask = np.array([[1, 1, 0], [0, 0, 0], [0, 1, 1]], np.uint8)
    assert bytes(rle.encode_mask(mask)) == bytes([0, 2, 1, 3, 1, 2])
    wide = np.zeros((1, 200), np.uint8)
    wide[0, 130:] = 1
    assert bytes(rle.encode_mask(wide)) == bytes([0x82, 0x01, 70])
    worst = np.tile(np.array([1, 0], np.uint8), (2, 4))  # longest canonical rows
    assert len(rle.encode_mask(worst)) == 2 * (8 + 1)


ROW3 = bytes([1, 1, 1])  # a valid 3-pixel row


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", rle.ERR_TRUNCATED),
        (ROW3, rle.ERR_TRUNCATED),  # only one of two rows
        (ROW3 + bytes([0, 1]), rle.ERR_TRUNCATED),  # row 2 stops short of W
        (ROW3 + bytes([0x83]), rle.ERR_TRUNCATED),  # varint cut in the middle
        (ROW3 + bytes([2, 2]), rle.ERR_RUN_PAST_ROW),
        (ROW3 + bytes([4]), rle.ERR_RUN_PAST_ROW),
        (ROW3 + bytes([0x84, 0x80, 0x80, 0x80, 0x00]), rle.ERR_VARINT),  # 5 bytes, not canonical
        (ROW3 + bytes([1, 0, 2]), rle.ERR_ZERO_RUN),
        (ROW3 + bytes([0, 0, 3]), rle.ERR_ZERO_RUN),
        (ROW3 + ROW3 + b"\x00", rle.ERR_TRAILING),
        (ROW3 + ROW3 + ROW3, rle.ERR_TRAILING),
        (ROW3 + bytes([0x80] * 5 + [0]), rle.ERR_VARINT),  # 6-byte varint
        (ROW3 + bytes([0x80] * 5), rle.ERR_VARINT),  # 5 bytes, continuation still set
        (ROW3 + bytes([0x80, 0x80, 0x80, 0x80, 0x10]), rle.ERR_VARINT),  # exactly 2^32
        (ROW3 + bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F]), rle.ERR_RUN_PAST_ROW),  # 2^32 - 1
    ],
)
def test_decode_mask_errors(data, code):
    mask, status = rle.decode_mask(np.frombuffer(data, np.uint8), 3, 2)
    assert status == code, rle.MASK_ERRORS.get(status)
    assert code in rle.MASK_ERRORS
    assert mask.shape == (2, 3)
    assert ref_decode_mask(data, 3, 2)[1] == code


def test_mask_errors_cover_every_code():
    assert set(rle.MASK_ERRORS) == {-1, -2, -3, -4, -5}


@pytest.mark.parametrize("runs", [bytes([0x83, 0x00]), bytes([0x80, 0x80, 0x80, 0x80, 0x00])])
def test_decode_mask_rejects_overlong_varints(runs):
    # spec §1: varints are canonical; 0x83 0x00 is a two-byte 3, 0x80*4 0x00 a five-byte 0
    mask, status = rle.decode_mask(runs + bytes([3]), 3, 2)
    assert status == rle.ERR_VARINT


def test_decode_mask_random_bytes_match_reference(rng):
    for _ in range(400):
        w, h = int(rng.integers(1, 6)), int(rng.integers(1, 4))
        n = int(rng.integers(0, 12))
        # small values make valid streams likely; some high bytes make long varints
        data = bytes(rng.choice([0, 1, 2, 3, 5, 0x80, 0x81, 0xFF], size=n).astype(np.uint8))
        mask, status = rle.decode_mask(data, w, h)
        ref, ref_status = ref_decode_mask(data, w, h)
        assert status == ref_status
        if status == 0:
            assert np.array_equal(mask, ref)


def test_decode_mask_accepts_bytes_and_rejects_bad_arguments():
    assert rle.decode_mask(b"\x03", 3, 1)[1] == 0
    with pytest.raises(ValueError):
        rle.decode_mask(b"", -1, 1)
    with pytest.raises(TypeError):
        rle.decode_mask(np.zeros(3, np.int32), 3, 1)


# ---------------------------------------------------------------- resample


@pytest.mark.parametrize("s", range(1, 9))
def test_bicubic_weights_match_spec_table(s):
    offsets, weights = resample.bicubic_weights(s)
    assert offsets.dtype == np.int64 and weights.dtype == np.int64
    assert offsets.shape == (s,) and weights.shape == (s, 4)
    expected = np.array(TABLE[s], np.int64)
    assert np.array_equal(offsets, expected[:, 1])
    assert np.array_equal(weights, expected[:, 2:])
    assert (weights.sum(axis=1) == 4096).all()


@pytest.mark.parametrize("s", [1, 2, 3, 4, 8])
def test_masked_area_downsample_matches_reference(rng, s):
    for h, w in [(1, 1), (7, 5), (2 * s + 1, 3 * s - 1), (17, 23)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = rng.random((h, w)) < 0.6
        out = resample.area_downsample(img, s, mask)
        assert np.array_equal(out, ref_area_downsample(img, s, mask))
    img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    half = np.zeros((8, 8), bool)
    half[:, :3] = True  # a subject column band: blocks keep only their background's mean
    assert not np.array_equal(resample.area_downsample(img, 4, half), resample.area_downsample(img, 4))


@pytest.mark.parametrize("s", range(1, 9))
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_area_downsample_matches_reference(rng, s, channels):
    for h, w in [(1, 1), (s, s), (7, 5), (2 * s + 1, 3 * s - 1), (17, 23)]:
        img = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        out = resample.area_downsample(img, s)
        assert out.shape == (-(-h // s), -(-w // s), channels) and out.dtype == np.uint8
        assert np.array_equal(out, ref_area_downsample(img, s))


@pytest.mark.parametrize("s", range(1, 9))
def test_area_downsample_exact_multiple_is_reshape_mean(rng, s):
    img = rng.integers(0, 256, (3 * s, 2 * s, 3), dtype=np.uint8)
    mean = img.reshape(3, s, 2, s, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.array_equal(resample.area_downsample(img, s), np.floor(mean + 0.5).astype(np.uint8))


def test_area_downsample_rounds_half_up():
    img = np.array([[[0], [1]], [[0], [0]]], np.uint8)  # sum 1 over 4 pixels -> 0.25 -> 0
    assert resample.area_downsample(img, 2)[0, 0, 0] == 0
    img = np.array([[[1], [1]], [[0], [0]]], np.uint8)  # 0.5 -> 1
    assert resample.area_downsample(img, 2)[0, 0, 0] == 1
    img = np.array([[[3], [4]]], np.uint8)  # partial block of 2 pixels: 3.5 -> 4
    assert resample.area_downsample(img, 3)[0, 0, 0] == 4


@pytest.mark.parametrize("s", range(1, 9))
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_bicubic_upsample_matches_reference(rng, s, channels):
    for height, width in [(1, 1), (s, s), (5, 7), (2 * s + 1, 3 * s - 1), (4 * s, 4 * s + 3), (19, 26)]:
        bh, bw = -(-height // s), -(-width // s)
        small = rng.integers(0, 256, (bh, bw, channels), dtype=np.uint8)
        out = resample.bicubic_upsample(small, s, width, height)
        assert out.shape == (height, width, channels) and out.dtype == np.uint8
        assert np.array_equal(out, ref_upsample(small, s, width, height))


@pytest.mark.parametrize("s", range(2, 9))
def test_bicubic_upsample_clamps_overshoot(s):
    small = np.zeros((5, 6, 1), np.uint8)
    small[:, 3:] = 255  # a step: ringing goes below 0 and above 255
    small[3:] = 255 - small[3:]
    raw = ref_upsample(small, s, 6 * s - 1, 5 * s, clamp=False)
    assert raw.min() < 0 and raw.max() > 255
    out = resample.bicubic_upsample(small, s, 6 * s - 1, 5 * s)
    assert np.array_equal(out, np.clip(raw, 0, 255))


def test_bicubic_s1_is_identity(rng):
    small = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    assert np.array_equal(resample.bicubic_upsample(small, 1, 9, 6), small)
    readonly = small.view()
    readonly.flags.writeable = False  # the wrappers' argument type
    assert np.array_equal(resample._upsample(readonly, 1, 9, 6), small)  # the generic kernel too


@pytest.mark.parametrize("s", range(1, 9))
def test_bicubic_constant_stays_constant(s):
    for value in (0, 1, 128, 254, 255):
        small = np.full((3, 4, 3), value, np.uint8)
        out = resample.bicubic_upsample(small, s, 4 * s - (s > 1), 3 * s)
        assert (out == value).all()


def test_bicubic_rejects_wrong_small_size():
    with pytest.raises(ValueError):
        resample.bicubic_upsample(np.zeros((2, 2, 3), np.uint8), 4, 9, 8)


# ---------------------------------------------------------------- blend


def composite(rng, h, w, channels, kind):
    mask = random_mask(rng, h, w, kind)
    up = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    subject = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    out = np.where(mask[..., None] != 0, subject, up)
    return np.ascontiguousarray(out), up, mask


def composed(out, up, mask, radius, scale=1):
    """paste then feather, as the decoder does: ``up`` is U = B at scale 1."""
    x0, y0, w, h = box_of(mask)
    image = up.copy()
    blend.paste(image, out[y0 : y0 + h, x0 : x0 + w], (x0, y0, w, h), mask)
    work = mask.copy()
    assert blend.feather(image, work, (x0, y0, w, h), radius, up, scale) is None
    return image


@pytest.mark.parametrize("radius", [0, 1, 2, 3, 6, 40])
@pytest.mark.parametrize("kind", MASK_KINDS + ["dot"])
def test_feather_matches_reference(rng, radius, kind):
    for h, w, channels in [(1, 1, 3), (1, 9, 1), (8, 1, 4), (7, 9, 3), (17, 23, 3), (30, 28, 1)]:
        if kind == "dot":  # a single subject pixel: the window is much smaller than the image
            out, up, _ = composite(rng, h, w, channels, "empty")
            mask = np.zeros((h, w), np.uint8)
            mask[int(rng.integers(h)), int(rng.integers(w))] = 1
            out[mask != 0] = rng.integers(0, 256, channels)
        else:
            out, up, mask = composite(rng, h, w, channels, kind)
        expected = ref_feather(out, up, mask, radius)
        image = composed(out, up, mask, radius)
        assert np.array_equal(image, expected)
        assert np.array_equal(image[mask != 0], out[mask != 0])


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_feather_computes_the_upsampled_background_under_the_subject(rng, scale):
    """With s > 1 the feather reads U at subject pixels from B (upsampled_at), not the image."""
    h, w = 37, 29
    small = rng.integers(0, 256, (-(-h // scale), -(-w // scale), 3), np.uint8)
    up = resample.bicubic_upsample(small, scale, w, h)
    mask = (rng.random((h, w)) < 0.3).astype(np.uint8)
    out = up.copy()
    out[mask != 0] = rng.integers(0, 256, (int(mask.sum()), 3))
    x0, y0, bw, bh = box_of(mask)
    image = up.copy()
    blend.paste(image, out[y0 : y0 + bh, x0 : x0 + bw], (x0, y0, bw, bh), mask)
    blend.feather(image, mask.copy(), (x0, y0, bw, bh), 3, small, scale)
    assert np.array_equal(image, ref_feather(out, up, mask, 3))
    ys, xs = np.mgrid[0:h, 0:w]
    at = [resample.upsampled_at(small, scale, *resample.bicubic_weights(scale), x, y, c)
          for y, x, c in zip(ys.ravel()[::7], xs.ravel()[::7], np.arange(ys.size)[::7] % 3)]
    assert at == [up[y, x, c] for y, x, c in zip(ys.ravel()[::7], xs.ravel()[::7], np.arange(ys.size)[::7] % 3)]


def test_feather_changes_background_near_subject():
    up = np.full((5, 12, 1), 100, np.uint8)
    mask = np.zeros((5, 12), np.uint8)
    mask[:, :3] = 1
    out = up.copy()
    out[:, :3] = 200  # e = 100 at the border
    expected = ref_feather(out, up, mask, 2)
    image = composed(out, up, mask, 2)  # R = 9: D = 3, 6 get w = 6, 3
    assert image[0, :, 0].tolist() == [200] * 3 + [167, 133] + [100] * 7
    assert np.array_equal(image, expected)


def test_feather_rounding_of_negative_differences():
    up = np.full((1, 3, 1), 100, np.uint8)
    mask = np.array([[1, 0, 0]], np.uint8)
    out = np.array([[[99], [100], [100]]], np.uint8)  # e = -1
    image = composed(out, up, mask, 1)  # R = 6, D = 3: floor((2*-1*3 + 6) / 12) = 0
    assert image[0, :, 0].tolist() == [99, 100, 100]
    out = np.array([[[90], [100], [100]]], np.uint8)  # e = -10: floor(-54 / 12) = -5
    image = composed(out, up, mask, 1)
    assert image[0, :, 0].tolist() == [90, 95, 100]


def test_feather_rejects_bad_arguments():
    out = np.zeros((3, 3, 3), np.uint8)
    mask = np.zeros((3, 3), np.uint8)
    with pytest.raises(ValueError):
        blend.feather(out, mask, (0, 0, 1, 1), blend.MAX_RADIUS + 1, out, 1)
    with pytest.raises(ValueError):
        blend.feather(out[:, ::2], mask[:, ::2], (0, 0, 1, 1), 1, out[:, ::2], 1)
    with pytest.raises(ValueError):  # the mask is overwritten: a read-only one is refused
        blend.feather(out, np.broadcast_to(mask, (3, 3)), (0, 0, 1, 1), 1, out, 1)
    with pytest.raises(ValueError):
        blend.feather(out, mask, (0, 0, 1, 1), 1, out[:2], 2)
    with pytest.raises(ValueError):
        blend.paste(out, np.zeros((2, 2, 3), np.uint8), (2, 2, 2, 2), mask)


# ---------------------------------------------------------------- predict


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("kind", MASK_KINDS)
def test_med_round_trip_and_reference(rng, channels, kind):
    for h, w in SHAPES:
        mask = random_mask(rng, h, w, kind)
        base = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        smooth = np.cumsum(rng.integers(-3, 4, (h, w, channels)), axis=1).astype(np.uint8)
        for pixels in (base, smooth):
            res = predict.med_encode(pixels, mask)
            assert res.dtype == np.uint8 and res.shape == (channels * int(mask.sum()),)
            assert np.array_equal(res, ref_med_encode(pixels, mask))
            out, status = predict.med_decode(res, mask, channels)
            assert status == 0 and out.shape == (h, w, channels) and out.dtype == np.uint8
            assert np.array_equal(out[mask != 0], pixels[mask != 0])


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_med_decode_arbitrary_residuals_match_reference(rng, channels):
    for h, w in [(1, 1), (4, 6), (9, 7)]:
        mask = random_mask(rng, h, w, "noise")
        res = rng.integers(0, 256, channels * int(mask.sum()), dtype=np.uint8)
        out, status = predict.med_decode(res, mask, channels)
        assert status == 0
        assert np.array_equal(out[mask != 0], ref_med_decode(res, mask, channels)[mask != 0])


def test_med_background_takes_prediction():
    # row 0: subject 10, background (pred 10), subject 30 -> residual of 30 is against 10
    pixels = np.array([[[10], [99], [30]]], np.uint8)
    mask = np.array([[1, 0, 1]], np.uint8)
    assert predict.med_encode(pixels, mask).tolist() == [20, 40]
    rgb = np.array([[[7, 5, 1]]], np.uint8)  # G = 5, R - G = 2, B - G = -4 mod 256 = 252
    assert predict.med_encode(rgb, np.ones((1, 1), np.uint8)).tolist() == [10, 4, 7]


def test_med_decode_errors():
    mask = np.array([[1, 0], [1, 1]], np.uint8)
    for n in (0, 8, 10):
        out, status = predict.med_decode(np.zeros(n, np.uint8), mask, 3)
        assert status == predict.ERR_LENGTH and status in predict.MED_ERRORS
    assert predict.med_decode(np.zeros(3, np.uint8), mask, 1)[1] == 0
    assert predict.med_decode(np.zeros(6, np.uint8), mask, 2)[1] == predict.ERR_CHANNELS
    assert predict.med_decode(b"", np.zeros((0, 0), np.uint8), 4)[1] == 0


def test_med_encode_rejects_bad_channels():
    with pytest.raises(ValueError):
        predict.med_encode(np.zeros((2, 2, 2), np.uint8), np.ones((2, 2), np.uint8))


# ---------------------------------------------------------------- bounds (fresh compile)

BOUNDS_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from peterpan_format._kernels import predict, rle
    rng = np.random.default_rng(1)
    for i in range(3000):
        w, h = int(rng.integers(0, 6)), int(rng.integers(0, 5))
        data = rng.integers(0, 256, int(rng.integers(0, 16)), dtype=np.uint8)
        if i % 2:
            data[rng.random(data.size) < 0.7] = rng.integers(0, 4)
        rle.decode_mask(data, w, h)
        mask = (rng.random((h, w)) < 0.5).astype(np.uint8)
        n = int(mask.sum())
        for c in (0, 1, 2, 3, 4, 5):
            size = c * n + int(rng.integers(-1, 2)) if c * n else int(rng.integers(0, 2))
            predict.med_decode(rng.integers(0, 256, size, dtype=np.uint8), mask, c)
    print("ok")
    """
)


def test_untrusted_kernels_in_bounds_with_boundscheck(tmp_path):
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", BOUNDS_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_bands_of_rows_on_threads_give_the_same_pixels(monkeypatch):
    """Bicubic upsampling, the JPEG box's IDCT and rendering, and the paste split rows
    across CPUs (threads); any banding must give the image one band gives."""
    import io

    import numba
    from PIL import Image

    from peterpan_format._kernels import threads
    from peterpan_format.jpeg import decode_jpeg_subject, encode_jpeg_subject

    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (45, 38, 3), dtype=np.uint8)).save(out, "JPEG", quality=80)
    mask = rng.random((45, 38)) < 0.5
    payload = encode_jpeg_subject(out.getvalue(), mask)
    values = rng.integers(0, 256, (20, 25, 3), dtype=np.uint8)
    subject = (rng.random((27, 33)) < 0.5).astype(np.uint8)

    def pasted():
        image = resample.bicubic_upsample(small, 4, 33, 27)
        blend.paste(image, values, (4, 5, 25, 20), subject)
        return image

    one = resample.bicubic_upsample(small, 4, 33, 27), decode_jpeg_subject(payload, mask), pasted()
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 1)  # Numba's cap holds
    assert threads.cpus() == 1
    monkeypatch.setattr(threads, "MIN_PIXELS", 1)
    for cpus in (2, 3, 7):
        monkeypatch.setattr(threads, "cpus", lambda cpus=cpus: cpus)
        assert len(threads.bands(27, 27 * 33)) == cpus
        assert np.array_equal(resample.bicubic_upsample(small, 4, 33, 27), one[0])
        assert np.array_equal(decode_jpeg_subject(payload, mask), one[1])
        assert np.array_equal(pasted(), one[2])
