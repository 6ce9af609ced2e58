"""SUBJ coding 3 (spec §6.3) and its near-lossless form, coding 5 (spec/FORMAT.md §6.5):
the range-coder kernels, an independent decoder written from the spec text alone, a model of
coding 5's reconstruction, and bounds safety on garbage input."""

import hashlib
import textwrap

import numpy as np
import pytest

from conftest import as_array, decode, encode, photo, run_boundschecked, synthetic
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


def spec_decode(payload: bytes, mask: np.ndarray, channels: int, near: int = 0) -> np.ndarray:
    """Spec §6.3 as written (with ``near`` = N >= 1: the stream of coding 5 after its byte N,
    as spec/FORMAT.md §6.5 writes it): the values of the box, or Reject."""
    h, w = mask.shape
    step = 2 * near + 1
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
                colour = channels >= 3 and p in (1, 2)

                def value(e):
                    if near == 0:
                        return (pred + e) % 256
                    r = pred + e * step
                    if colour:  # G' + value in 0 ... 255, G' = V[0, j, i] decoded just before
                        return min(max(V[0, j, i] + r, 0), 255) - V[0, j, i]
                    return min(max(r, 0), 255)

                if not mask[j, i]:
                    V[p, j, i] = value(0)
                    continue
                grad = abs(W - NW) + abs(N - NW) + abs(N - NE)
                act = grad // step + abs(eW) + abs(eN) + abs(eNW) + abs(eNE)
                q = sum(1 for t in (3, 7, 13, 22, 36, 60, 100, 170) if t <= act)
                t = (int(W == NW) + 2 * int(N == NW)) if colour else 0
                u = sgn3(E[1, j, i]) if channels >= 3 and p == 2 else 0
                c = q + 9 * (t + 4 * u)
                s = 3 * sgn3(eW) + sgn3(eN) + 9 * sgn3(eNE + eNW) + 27 * u
                e = residual(p, c, s)
                V[p, j, i] = value(e)
                E[p, j, i] = e
    if pos != len(payload):
        raise Reject("bytes left over")
    return planes_to_pixels(V, near)


def planes_to_pixels(V: np.ndarray, near: int) -> np.ndarray:
    """uint8[h, w, C] from the planes V[C, h, w]: coding 3 mod 256, coding 5 exactly."""
    channels, h, w = V.shape
    out = np.zeros((h, w, channels), np.uint8)
    offset = 128 if near == 0 else 0
    if channels == 1:
        out[:, :, 0] = V[0]
    else:
        for c, p in ((0, 1), (2, 2)):
            channel = V[p] + V[0] - offset
            assert near == 0 or (channel.min() >= 0 and channel.max() <= 255)
            out[:, :, c] = channel % 256
        out[:, :, 1] = V[0]
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


# ---------------------------------------------------------------- near = 0 is coding 3, unchanged

# sha256 of the coding 3 streams of golden_inputs(), written by the kernel before it took
# ``near`` (the coding 3 streams must not change)
GOLDEN_SHA256 = {
    "noise1": "93937372dfff600e4bff0d0ce9361e3d9781c47c7964fefe49bd4f2967d8b4af",
    "smooth1": "7376ef77abfe05670638be9fbe9ee114efea276c07bca1d11d8efdcbc0239c43",
    "noise3": "02de23a90d0596f07db22d8bacb90afced1ed03be6feea3bc194bec81dd60a54",
    "smooth3": "39060a2ceaab973bb502a61c761477f7ddd51453194af538f8f829a99c304de9",
    "noise4": "b50e9621a96cab654d3cae4b49027b8b5a87176df889a8e3422c3220c655951f",
    "smooth4": "505a3f38aa47dd78839587887e774c4dfc886f4efaeee8aef169074d8405708d",
}
#: the same for the box of photo "hsd-232" (RGB, 142 x 379)
GOLDEN_PHOTO_SHA256 = "9c8824ee793e2e6c0f51fefaf68abe4569121f9053f50f50a9280801f53ea1db"


def golden_inputs():
    rng = np.random.default_rng(424242)
    cases = []
    for channels in (1, 3, 4):
        h, w = 19, 33
        yy, xx = np.mgrid[0:h, 0:w]
        mask = ((((yy - 9) / 8.0) ** 2 + ((xx - 15) / 14.0) ** 2) <= 1).astype(np.uint8)
        noise = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        base = np.stack([(xx * (2 + c) + yy * (3 - c)) % 256 for c in range(channels)], axis=2)
        smooth = np.clip(base + rng.integers(-4, 5, base.shape), 0, 255).astype(np.uint8)
        cases.append((f"noise{channels}", noise, mask))
        cases.append((f"smooth{channels}", smooth, np.ones((h, w), np.uint8)))
    return cases


def sha256(data) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()


def test_near_0_streams_are_unchanged():
    for name, pixels, mask in golden_inputs():
        assert sha256(entropy.cm_encode(pixels, mask)) == GOLDEN_SHA256[name], name
        assert sha256(entropy.cm_encode(pixels, mask, 0)) == GOLDEN_SHA256[name], name
        out, status = entropy.cm_decode(entropy.cm_encode(pixels, mask), mask, pixels.shape[2], 0)
        assert status == 0
        np.testing.assert_array_equal(out[mask != 0], pixels[mask != 0])


def test_near_0_photo_stream_is_unchanged():
    crop, crop_mask = photo_box("hsd-232")
    assert sha256(entropy.cm_encode(crop, crop_mask, 0)) == GOLDEN_PHOTO_SHA256


# ---------------------------------------------------------------- near-lossless (coding 5)

NEARS = [1, 2, 3, 7, 31]


def photo_box(photo_id):
    image, mask = photo(photo_id)
    x0, y0, w, h = subject.box_of(mask)
    crop = np.ascontiguousarray(np.asarray(image)[y0 : y0 + h, x0 : x0 + w])
    return crop, np.ascontiguousarray(mask[y0 : y0 + h, x0 : x0 + w], dtype=np.uint8)


def in_mode(rgb: np.ndarray, channels: int) -> np.ndarray:
    """An RGB array as 1 (L), 3 or 4 (RGBA, with an alpha ramp) channels."""
    if channels == 1:
        return np.ascontiguousarray(rgb[:, :, 1:2])
    if channels == 3:
        return rgb
    h, w = rgb.shape[:2]
    alpha = ((np.arange(w)[None, :] * 7 + np.arange(h)[:, None] * 3) % 256).astype(np.uint8)
    return np.ascontiguousarray(np.dstack([rgb, alpha]))


def near_test_pixels(rng, h, w, channels, kind):
    if kind in ("noise", "smooth"):
        return random_pixels(rng, h, w, channels, kind)
    if kind == "gradient":  # ramps in every direction, R - G and B - G crossing 0
        yy, xx = np.mgrid[0:h, 0:w]
        ramps = [(xx * (5 + 3 * c) + yy * (7 - 2 * c)) % 256 for c in range(channels)]
        return np.stack(ramps, axis=2).astype(np.uint8)
    # "saturated": values at and next to 0 and 255, where the clamping matters
    return rng.choice(np.array([0, 1, 2, 3, 128, 252, 253, 254, 255], np.uint8), (h, w, channels))


def check_near(pixels, mask, near):
    """Round trip at max error ``near``: the bound holds; returns (stream, decoded values)."""
    channels = pixels.shape[2]
    data = entropy.cm_encode(pixels, mask, near)
    out, status = entropy.cm_decode(data, mask, channels, near)
    assert status == 0
    assert out.shape == pixels.shape and out.dtype == np.uint8
    err = np.abs(out.astype(np.int64) - pixels)[mask != 0]
    assert err.max() <= near, (near, int(err.max()))
    return data, out


@pytest.mark.parametrize("near", NEARS)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_near_max_error_synthetic(rng, near, channels):
    for h, w in [(1, 1), (1, 9), (7, 1), (16, 16), (23, 41)]:
        for mask_kind in ("full", "noise", "blob"):
            mask = random_mask(rng, h, w, mask_kind)
            for kind in ("noise", "smooth", "gradient", "saturated"):
                pixels = near_test_pixels(rng, h, w, channels, kind)
                check_near(pixels, mask, near)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_near_max_error_photos(channels):
    for photo_id in ("hsd-232", "camvid_0016E5_05460"):
        crop, crop_mask = photo_box(photo_id)
        pixels = in_mode(crop, channels)
        sizes = []
        for near in [0, *NEARS]:
            data, out = check_near(pixels, crop_mask, near)
            sizes.append(data.size)
            if near:
                diff = out[crop_mask != 0].astype(np.float64) - pixels[crop_mask != 0]
                assert 10 * np.log10(255**2 / np.mean(diff * diff)) >= 20 * np.log10(255 / near)
        # a larger error allowance gives a smaller stream on a photo
        assert all(a > b for a, b in zip(sizes, sizes[1:])), sizes


def test_near_extremes_clamp():
    # checkerboards of 0 / 255 in each channel and in opposite phase: the reconstruction
    # overshoots 0 ... 255 and must be clamped into range, and R - G' spans -255 ... 255
    yy, xx = np.mgrid[0:12, 0:13]
    board = ((yy + xx) % 2 * 255).astype(np.uint8)
    pixels = np.dstack([board, 255 - board, board, 255 - board])
    mask = np.ones((12, 13), np.uint8)
    mask[3, 4] = mask[7, 0] = 0
    for near in [1, 2, 5, 31]:
        for channels in (1, 3, 4):
            check_near(np.ascontiguousarray(pixels[:, :, :channels]), mask, near)


def reference_reconstruction(pixels: np.ndarray, mask: np.ndarray, near: int):
    """Coding 5's encoder-side rules in plain Python, without the range coder: (values the
    decoder returns, the quantised residuals q[C, h, w])."""
    h, w, channels = pixels.shape
    step = 2 * near + 1
    V = np.zeros((channels, h, w), np.int64)
    Q = np.zeros((channels, h, w), np.int64)
    for j in range(h):
        for i in range(w):
            for p in range(channels):
                if j == 0:
                    W = V[p, 0, i - 1] if i > 0 else 0
                    N = NW = W
                else:
                    N = V[p, j - 1, i]
                    W = V[p, j, i - 1] if i > 0 else N
                    NW = V[p, j - 1, i - 1] if i > 0 else N
                pred = min(W, N) if NW >= max(W, N) else max(W, N) if NW <= min(W, N) else W + N - NW
                colour = channels >= 3 and p in (1, 2)
                g = V[0, j, i] if colour else 0  # G' of this pixel, reconstructed first
                channel = {0: 1, 1: 0, 2: 2, 3: 3}[p] if channels > 1 else 0
                q = 0
                if mask[j, i]:
                    e = int(pixels[j, i, channel]) - g - pred
                    q = (abs(e) + near) // step * (1 if e >= 0 else -1)
                    assert abs(q) <= 170
                V[p, j, i] = min(max(g + pred + q * step, 0), 255) - g
                Q[p, j, i] = q
    return planes_to_pixels(V, near), Q


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_near_matches_the_reference_model_and_the_spec_decoder(rng, channels):
    for near in [1, 2, 4, 31]:
        for h, w in [(1, 1), (2, 7), (6, 5), (9, 11)]:
            kinds = (("full", "noise"), ("blob", "gradient"), ("noise", "saturated"), ("noise", "smooth"))
            for mask_kind, kind in kinds:
                mask = random_mask(rng, h, w, mask_kind)
                pixels = near_test_pixels(rng, h, w, channels, kind)
                data, out = check_near(pixels, mask, near)
                expected, _ = reference_reconstruction(pixels, mask, near)
                np.testing.assert_array_equal(out, expected)
                np.testing.assert_array_equal(spec_decode(bytes(data), mask, channels, near), out)


def test_near_reference_model_on_a_photo_patch():
    crop, crop_mask = photo_box("hsd-232")
    h, w = crop.shape[:2]
    crop = np.ascontiguousarray(crop[h // 2 : h // 2 + 14, w // 2 : w // 2 + 18])
    crop_mask = np.ascontiguousarray(crop_mask[h // 2 : h // 2 + 14, w // 2 : w // 2 + 18])
    crop_mask[0, 0] = 1
    for near in (1, 3):
        data, out = check_near(crop, crop_mask, near)
        expected, q = reference_reconstruction(crop, crop_mask, near)
        np.testing.assert_array_equal(out, expected)
        assert np.count_nonzero(q) > 0
        np.testing.assert_array_equal(spec_decode(bytes(data), crop_mask, 3, near), out)


def test_near_background_pixels():
    # row 0: subject 10, background, subject 10; at N = 2 the background takes the
    # prediction W = 10 (residual 0), and the stream decodes the same every time
    mask = np.array([[1, 0, 1]], np.uint8)
    pixels = np.array([[[10], [99], [12]]], np.uint8)
    data = entropy.cm_encode(pixels, mask, 2)
    out, status = entropy.cm_decode(data, mask, 1, 2)
    assert status == 0 and out[0, :, 0].tolist() == [10, 10, 10]
    # colour planes at background pixels: G' + prediction of R - G', clamped to 0 ... 255
    rng = np.random.default_rng(11)
    for near in NEARS:
        for channels in (3, 4):
            mask = random_mask(rng, 15, 17, "noise")
            pixels = near_test_pixels(rng, 15, 17, channels, "saturated")
            data, out = check_near(pixels, mask, near)
            again, status = entropy.cm_decode(bytes(data), mask.copy(), channels, near)
            assert status == 0
            np.testing.assert_array_equal(again, out)
            # the background does not depend on the pixels hidden there
            hidden = pixels.copy()
            hidden[mask == 0] = 255 - hidden[mask == 0]
            other = entropy.cm_encode(hidden, mask, near)
            assert bytes(other) == bytes(data)


def test_near_arguments():
    mask = np.ones((3, 4), np.uint8)
    pixels = np.arange(36, dtype=np.uint8).reshape(3, 4, 3)
    for bad in (-1, 32, 1.0, True):
        with pytest.raises(ValueError):
            entropy.cm_encode(pixels, mask, bad)
    data = entropy.cm_encode(pixels, mask, 3)
    for bad in (-1, 32, 255, 10**30):
        out, status = entropy.cm_decode(data, mask, 3, bad)
        assert status == entropy.ERR_NEAR and status in entropy.CM_ERRORS
    assert entropy.cm_decode(data, mask, 3, 3)[1] == 0
    assert entropy.cm_decode(data[:-1], mask, 3, 3)[1] == entropy.ERR_TRUNCATED
    longer = np.concatenate([data, np.zeros(1, np.uint8)])
    assert entropy.cm_decode(longer, mask, 3, 3)[1] == entropy.ERR_TRAILING


def test_near_division_by_multiplication_is_exact():
    x = np.arange(entropy.DIV_MAX + 1)
    for near in range(entropy.NEAR_MAX + 1):
        step = 2 * near + 1
        mul = -((-1 << entropy.DIV_SHIFT) // step)
        np.testing.assert_array_equal((x * mul) >> entropy.DIV_SHIFT, x // step)


def test_near_spec_decoder_agrees_on_garbage(rng):
    """Any bytes at N >= 1: both decoders accept or reject alike, and agree on what they accept."""
    accepted = 0
    for trial in range(300):
        h, w = int(rng.integers(1, 4)), int(rng.integers(1, 5))
        channels = [1, 3, 4][trial % 3]
        near = [1, 2, 7, 31][trial % 4]
        mask = random_mask(rng, h, w, "noise")
        if trial % 2:
            data = bytes(rng.integers(0, 256, int(rng.integers(0, 12)), dtype=np.uint8))
        else:
            pixels = near_test_pixels(rng, h, w, channels, "saturated")
            good = bytearray(entropy.cm_encode(pixels, mask, near))
            if trial % 6 == 0:
                good = good[: int(rng.integers(0, len(good)))]
            else:
                good[int(rng.integers(0, len(good)))] ^= 1 << int(rng.integers(0, 8))
            data = bytes(good)
        ours, status = entropy.cm_decode(data, mask, channels, near)
        try:
            theirs = spec_decode(data, mask, channels, near)
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
        near = int(rng.choice([0, 0, 1, 2, 7, 31]))
        if i % 3 == 0 and h and w and channels in (1, 3, 4):
            good = entropy.cm_encode(rng.integers(0, 256, (h, w, channels), dtype=np.uint8), mask, near)
            data = good[: int(rng.integers(0, good.size + 1))]
        else:
            data = rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8)
            if i % 2:
                data[rng.random(data.size) < 0.7] = rng.choice([0, 255])
        out, status = entropy.cm_decode(data, mask, channels, near)
        assert status in (0, *entropy.CM_ERRORS), status
    assert entropy.cm_decode(np.zeros(9, np.uint8), np.ones((2, 2), np.uint8), 3, 32)[1] == entropy.ERR_NEAR
    # the encoder's output buffer on incompressible input and on a long flat run
    for h, w, channels in ((40, 57, 4), (3, 300, 3), (1, 1, 1)):
        pixels = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        mask = np.ones((h, w), np.uint8)
        for p in (pixels, np.zeros_like(pixels)):
            out, status = entropy.cm_decode(entropy.cm_encode(p, mask), mask, channels)
            assert status == 0 and np.array_equal(out, p)
            for near in (1, 31):
                out, status = entropy.cm_decode(entropy.cm_encode(p, mask, near), mask, channels, near)
                assert status == 0
                assert np.abs(out.astype(int) - p).max() <= near
    print("ok")
    """
)


def test_kernels_in_bounds_with_boundscheck(tmp_path):
    run_boundschecked(BOUNDS_SCRIPT, tmp_path)


def test_limit_stops_the_encoder_only_past_it(rng):
    """subject.encode gives the range coder coding 4's length as a limit: a stream longer
    than the limit is dropped (None), one within it is the same stream as without."""
    pixels = rng.integers(0, 256, (23, 31, 3), np.uint8)
    mask = (rng.random((23, 31)) < 0.6).astype(np.uint8)
    full = entropy.cm_encode(pixels, mask)
    assert entropy.cm_encode(pixels, mask, limit=full.size - 1) is None
    assert entropy.cm_encode(pixels, mask, limit=10) is None
    assert np.array_equal(entropy.cm_encode(pixels, mask, limit=full.size), full)
    assert np.array_equal(entropy.cm_encode(pixels, mask, 2, limit=1 << 20), entropy.cm_encode(pixels, mask, 2))
