"""SUBJ coding 3 (spec §6.3): the range-coder kernels, an independent decoder written from
the spec text alone, and bounds safety on garbage input."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import as_array, decode, encode, photo, synthetic
from peterpan_format import subject
from peterpan_format._kernels import entropy

RNG_SEED = 20240613


@pytest.fixture
def rng():
    return np.random.default_rng(RNG_SEED)


def random_mask(rng, h, w, kind):
    if kind == "full":
        return np.ones((h, w), np.uint8)
    if kind == "noise":
        mask = (rng.random((h, w)) < 0.5).astype(np.uint8)
    else:  # blob
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(1, h / 2 + 1), rng.uniform(1, w / 2 + 1)
        mask = ((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) <= 1).astype(np.uint8)
    mask[rng.integers(0, h), rng.integers(0, w)] = 1  # at least one subject pixel
    return mask


def random_pixels(rng, h, w, channels, kind):
    if kind == "noise":
        return rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    if kind == "flat":
        return np.full((h, w, channels), rng.integers(0, 256), np.uint8)
    # smooth with a little noise, and colour differences that cross 0 (R - G wraps)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * (2 + c) + yy * (3 - c)) % 256 for c in range(channels)], axis=2)
    return np.clip(base + rng.integers(-4, 5, base.shape), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- a decoder from the spec text


class Reject(Exception):
    pass


def sgn3(x):
    return 0 if x == 0 else 1 if x > 0 else 2


def spec_decode(payload: bytes, mask: np.ndarray, channels: int) -> np.ndarray:
    """Spec §6.3 as written: the values of the box's subject pixels, or Reject."""
    h, w = mask.shape
    pos = 0

    def next_byte():
        nonlocal pos
        if pos >= len(payload):
            raise Reject("payload ends early")
        pos += 1
        return payload[pos - 1]

    if len(payload) < 4:
        raise Reject("payload ends early")
    rc = {"range": 0xFFFFFFFF, "code": int.from_bytes(payload[:4], "big")}
    pos = 4

    def normalise():
        while rc["range"] < 2**24:
            rc["range"] = rc["range"] * 256
            rc["code"] = (rc["code"] * 256 + next_byte()) % 2**32

    def bit(prob):  # prob = [P, n]
        P, n = prob
        bound = (rc["range"] >> 12) * P
        sh = min(6, (n + 4).bit_length() - 1)  # floor(log2(n + 4))
        if rc["code"] < bound:
            b = 0
            rc["range"] = bound
            P = P + ((4096 - P) >> sh)
        else:
            b = 1
            rc["code"] -= bound
            rc["range"] -= bound
            P = P - (P >> sh)
        prob[0], prob[1] = P, min(n + 1, 60)
        normalise()
        return b

    def direct():
        rc["range"] >>= 1
        if rc["code"] < rc["range"]:
            b = 0
        else:
            b = 1
            rc["code"] -= rc["range"]
        normalise()
        return b

    Z = [[[[2048, 0] for _ in range(15)] for _ in range(108)] for _ in range(channels)]
    S = [[[2048, 0] for _ in range(81)] for _ in range(channels)]
    V = np.zeros((channels, h, w), np.int64)
    E = np.zeros((channels, h, w), np.int64)

    def residual(p, c, s):
        z = Z[p][c]
        if bit(z[0]) == 0:
            return 0
        neg = bit(S[p][s])
        x = 0
        while x < 7 and bit(z[1 + x]) == 1:
            x += 1
        if x == 0:
            m = 1
        else:
            m = 2 + bit(z[7 + x])
            for _ in range(x - 1):
                m = 2 * m + direct()
        return -m if neg else m

    for j in range(h):
        for i in range(w):
            for p in range(channels):
                if j == 0:
                    W = V[p, 0, i - 1] if i > 0 else 0
                    N = NW = NE = W
                else:
                    N = V[p, j - 1, i]
                    W = V[p, j, i - 1] if i > 0 else N
                    NW = V[p, j - 1, i - 1] if i > 0 else N
                    NE = V[p, j - 1, i + 1] if i < w - 1 else N

                def e_at(ii, jj):
                    return E[p, jj, ii] if 0 <= ii < w and 0 <= jj < h else 0

                eW, eN, eNW, eNE = e_at(i - 1, j), e_at(i, j - 1), e_at(i - 1, j - 1), e_at(i + 1, j - 1)
                if NW >= max(W, N):
                    pred = min(W, N)
                elif NW <= min(W, N):
                    pred = max(W, N)
                else:
                    pred = W + N - NW
                if not mask[j, i]:
                    V[p, j, i] = pred
                    continue
                act = abs(W - NW) + abs(N - NW) + abs(N - NE) + abs(eW) + abs(eN) + abs(eNW) + abs(eNE)
                q = sum(1 for t in (3, 7, 13, 22, 36, 60, 100, 170) if t <= act)
                colour = channels >= 3 and p in (1, 2)
                t = (int(W == NW) + 2 * int(N == NW)) if colour else 0
                u = sgn3(E[1, j, i]) if channels >= 3 and p == 2 else 0
                c = q + 9 * (t + 4 * u)
                s = 3 * sgn3(eW) + sgn3(eN) + 9 * sgn3(eNE + eNW) + 27 * u
                e = residual(p, c, s)
                V[p, j, i] = (pred + e) % 256
                E[p, j, i] = e
    if pos != len(payload):
        raise Reject("bytes left over")
    out = np.zeros((h, w, channels), np.uint8)
    if channels == 1:
        out[:, :, 0] = V[0]
    else:
        out[:, :, 1] = V[0]
        out[:, :, 0] = (V[1] + V[0] - 128) % 256
        out[:, :, 2] = (V[2] + V[0] - 128) % 256
        if channels == 4:
            out[:, :, 3] = V[3]
    return out


# ---------------------------------------------------------------- kernel round trips


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_round_trip_random(rng, channels):
    for h, w in [(1, 1), (1, 9), (7, 1), (5, 6), (16, 16), (23, 41)]:
        for mask_kind in ("full", "noise", "blob"):
            mask = random_mask(rng, h, w, mask_kind)
            for pixel_kind in ("noise", "flat", "smooth"):
                pixels = random_pixels(rng, h, w, channels, pixel_kind)
                data = entropy.cm_encode(pixels, mask)
                assert data.dtype == np.uint8 and data.size >= 4
                out, status = entropy.cm_decode(data, mask, channels)
                assert status == 0
                assert out.shape == (h, w, channels) and out.dtype == np.uint8
                np.testing.assert_array_equal(out[mask != 0], pixels[mask != 0])


def test_round_trip_extreme_residuals():
    # residuals of +-128 (the largest magnitude) and values that alternate 0 / 255
    pixels = np.zeros((6, 9, 4), np.uint8)
    pixels[::2, ::2] = 255
    pixels[1::2, 1::2, 1] = 128
    mask = np.ones((6, 9), np.uint8)
    out, status = entropy.cm_decode(entropy.cm_encode(pixels, mask), mask, 4)
    assert status == 0
    np.testing.assert_array_equal(out, pixels)


@pytest.mark.parametrize("photo_id", ["ccp_0741", "camvid_0016E5_05460"])
def test_round_trip_photo_crop_smaller_than_med(photo_id):
    image, mask = photo(photo_id)
    x0, y0, w, h = subject.box_of(mask)
    crop = np.ascontiguousarray(np.asarray(image)[y0 : y0 + h, x0 : x0 + w])
    crop_mask = np.ascontiguousarray(mask[y0 : y0 + h, x0 : x0 + w], dtype=np.uint8)
    data = entropy.cm_encode(crop, crop_mask)
    out, status = entropy.cm_decode(data, crop_mask, 3)
    assert status == 0
    np.testing.assert_array_equal(out[crop_mask != 0], crop[crop_mask != 0])
    assert data.size < 0.95 * len(subject._encode_med(crop, crop_mask))


def test_background_pixels_take_the_prediction():
    # row 0: subject 10, background (prediction W = 10), subject 10 -> residuals 10, 0
    mask = np.array([[1, 0, 1]], np.uint8)
    pixels = np.array([[[10], [99], [10]]], np.uint8)
    data = entropy.cm_encode(pixels, mask)
    out, status = entropy.cm_decode(data, mask, 1)
    assert status == 0 and out[0, :, 0].tolist() == [10, 10, 10]
    assert spec_decode(bytes(data), mask, 1)[0, :, 0].tolist() == [10, 10, 10]


def test_errors():
    mask = np.ones((3, 4), np.uint8)
    pixels = np.arange(36, dtype=np.uint8).reshape(3, 4, 3)
    data = entropy.cm_encode(pixels, mask)
    assert entropy.cm_decode(data, mask, 3)[1] == 0
    assert entropy.cm_decode(data[:-1], mask, 3)[1] == entropy.ERR_TRUNCATED
    assert entropy.cm_decode(b"", mask, 3)[1] == entropy.ERR_TRUNCATED
    longer = np.concatenate([data, np.zeros(1, np.uint8)])
    assert entropy.cm_decode(longer, mask, 3)[1] == entropy.ERR_TRAILING
    assert entropy.cm_decode(data, mask, 2)[1] == entropy.ERR_CHANNELS
    for status in (entropy.ERR_TRUNCATED, entropy.ERR_TRAILING, entropy.ERR_CHANNELS):
        assert status in entropy.CM_ERRORS
    with pytest.raises(ValueError):
        entropy.cm_encode(np.zeros((2, 2, 2), np.uint8), np.ones((2, 2), np.uint8))
    with pytest.raises(ValueError):
        entropy.cm_encode(np.zeros((2, 2, 3), np.uint8), np.ones((2, 3), np.uint8))


# ---------------------------------------------------------------- the spec text is sufficient


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_spec_decoder_reads_kernel_streams(rng, channels):
    for h, w in [(1, 1), (2, 7), (6, 5), (9, 11)]:
        kinds = (("full", "noise"), ("blob", "smooth"), ("noise", "flat"), ("noise", "noise"))
        for mask_kind, pixel_kind in kinds:
            mask = random_mask(rng, h, w, mask_kind)
            pixels = random_pixels(rng, h, w, channels, pixel_kind)
            data = bytes(entropy.cm_encode(pixels, mask))
            ours, status = entropy.cm_decode(data, mask, channels)
            assert status == 0
            theirs = spec_decode(data, mask, channels)
            np.testing.assert_array_equal(theirs[mask != 0], pixels[mask != 0])
            # background pixels of the box are the §6.3 predictions in both
            np.testing.assert_array_equal(theirs, ours)


def test_spec_decoder_on_a_photo_patch():
    image, mask = photo("hsd-232")
    x0, y0, w, h = subject.box_of(mask)
    y, x = y0 + h // 2, x0 + w // 2
    crop = np.ascontiguousarray(np.asarray(image)[y : y + 14, x : x + 18])
    crop_mask = np.ascontiguousarray(mask[y : y + 14, x : x + 18], dtype=np.uint8)
    crop_mask[0, 0] = 1
    data = bytes(entropy.cm_encode(crop, crop_mask))
    np.testing.assert_array_equal(spec_decode(data, crop_mask, 3), entropy.cm_decode(data, crop_mask, 3)[0])


def test_spec_decoder_agrees_on_garbage(rng):
    """Any bytes: both decoders accept or reject alike, and agree on what they accept."""
    accepted = 0
    for trial in range(300):
        h, w = int(rng.integers(1, 4)), int(rng.integers(1, 5))
        channels = [1, 3, 4][trial % 3]
        mask = random_mask(rng, h, w, "noise")
        if trial % 2:
            data = bytes(rng.integers(0, 256, int(rng.integers(0, 12)), dtype=np.uint8))
        else:  # a valid stream, cut short, extended or with one byte changed
            good = bytearray(entropy.cm_encode(random_pixels(rng, h, w, channels, "noise"), mask))
            edit = trial % 6
            if edit == 0:
                good = good[: int(rng.integers(0, len(good)))]
            elif edit == 2:
                good += bytes([int(rng.integers(0, 256))])
            else:
                good[int(rng.integers(0, len(good)))] ^= 1 << int(rng.integers(0, 8))
            data = bytes(good)
        ours, status = entropy.cm_decode(data, mask, channels)
        try:
            theirs = spec_decode(data, mask, channels)
        except Reject:
            assert status in (entropy.ERR_TRUNCATED, entropy.ERR_TRAILING)
            continue
        assert status == 0
        np.testing.assert_array_equal(theirs, ours)
        accepted += 1
    assert accepted > 20


# ---------------------------------------------------------------- through subject.py and Pillow


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_plugin_round_trip_with_coding_3(mode):
    image, mask = synthetic(mode)
    data = encode(image, mask=mask, subject_coding="cm")
    decoded = decode(data)
    np.testing.assert_array_equal(as_array(decoded)[mask], as_array(image)[mask])


def test_auto_picks_coding_3_on_a_photo():
    image, mask = photo("cat_group0421_jpeg")
    pixels = np.asarray(image)
    payload = subject.encode(pixels, mask.astype(np.uint8), "auto")
    assert payload[0] == subject.CM
    box, values = subject.decode(payload, mask.astype(np.uint8), 3)
    x0, y0, w, h = box
    np.testing.assert_array_equal(values[mask[y0 : y0 + h, x0 : x0 + w]], pixels[mask])


def test_subject_decode_rejects_a_bad_coding_3_payload():
    mask = np.zeros((5, 6), np.uint8)
    mask[1:4, 2:5] = 1
    pixels = np.random.default_rng(3).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    payload = subject.encode(pixels, mask, "cm")
    assert payload[0] == subject.CM
    with pytest.raises(OSError, match="coding 3"):
        subject.decode(payload[:-1], mask, 3)
    with pytest.raises(OSError, match="coding 3"):
        subject.decode(payload + b"\x00", mask, 3)


# ---------------------------------------------------------------- bounds (fresh compile)

BOUNDS_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from peterpan_format._kernels import entropy
    rng = np.random.default_rng(5)
    for i in range(3000):
        w, h = int(rng.integers(0, 7)), int(rng.integers(0, 6))
        mask = (rng.random((h, w)) < 0.6).astype(np.uint8)
        channels = int(rng.choice([0, 1, 2, 3, 4, 5]))
        if i % 3 == 0 and h and w and channels in (1, 3, 4):
            good = entropy.cm_encode(rng.integers(0, 256, (h, w, channels), dtype=np.uint8), mask)
            data = good[: int(rng.integers(0, good.size + 1))]
        else:
            data = rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8)
            if i % 2:
                data[rng.random(data.size) < 0.7] = rng.choice([0, 255])
        out, status = entropy.cm_decode(data, mask, channels)
        assert status in (0, *entropy.CM_ERRORS), status
    # the encoder's output buffer on incompressible input and on a long flat run
    for h, w, channels in ((40, 57, 4), (3, 300, 3), (1, 1, 1)):
        pixels = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        mask = np.ones((h, w), np.uint8)
        for p in (pixels, np.zeros_like(pixels)):
            out, status = entropy.cm_decode(entropy.cm_encode(p, mask), mask, channels)
            assert status == 0 and np.array_equal(out, p)
    print("ok")
    """
)


def test_kernels_in_bounds_with_boundscheck(tmp_path):
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", BOUNDS_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
