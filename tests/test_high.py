"""subject="high": the subject DCT-coded as a JPEG at subject_quality, requantised for our coder."""

import io

import numpy as np
import pytest
from PIL import Image

from conftest import as_array, decode, encode, photo, synthetic
from peterpan_format.jpeg import payload, read_jpeg
from peterpan_format.jpeg.quantise import (
    BASIS, encode_dct_subject, jpeg_of, requantise, subject_error, _blocks, _downsample, _planes,
)
from peterpan_format.jpeg.select import kept_blocks


def subject_coding(data: bytes) -> int:
    pos = 8
    while True:
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"SUBJ":
            return data[pos + 8]
        pos += 12 + length


def jpeg_error(image: Image.Image, mask: np.ndarray, quality: int) -> float:
    """Squared error over the subject's channels of Pillow's JPEG at ``quality``."""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    with Image.open(out) as im:
        got = as_array(im).astype(np.int64)
    return float(np.sum((got[mask] - as_array(image)[mask]) ** 2))


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("quality", [50, 90])
def test_high_is_coding4_no_worse_than_that_jpeg(mode, quality):
    image, mask = synthetic(mode, size=(53, 45), seed=7)
    data = encode(image, mask=mask, subject="high", subject_quality=quality)
    assert subject_coding(data) == 4
    got = as_array(decode(data)).astype(np.int64)
    error = float(np.sum((got[mask] - as_array(image)[mask]) ** 2))
    assert 0 < error <= jpeg_error(image, mask, quality)


def test_high_photo_against_jpeg():
    image, mask = photo("hsd-232")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    data = encode(image, mask=mask, subject="high", subject_quality=85)
    got = as_array(decode(data)).astype(np.int64)
    assert np.sum((got[mask] - as_array(image)[mask]) ** 2) <= jpeg_error(image, mask, 85)
    assert len(data) < 0.6 * len(out.getvalue())  # the subject is 14% of this photo
    assert len(data) < len(encode(image, mask=mask, subject="high", subject_quality=95))


def test_rdo_fewer_bytes_at_no_more_error():
    # The requantised coefficients against libjpeg's own, at the same tables: fewer bytes
    # for at most the same subject error (what encode_dct_subject checks on every image).
    image, mask = photo("ccp_0741")
    pixels = as_array(image)
    mask = mask.astype(np.uint8)
    img = read_jpeg(jpeg_of(pixels, 80))
    plain = payload.build(img, mask, "arith")
    tuned = encode_dct_subject(pixels, mask, 80)
    assert len(tuned) < 0.97 * len(plain)


def test_rdo_keeps_dc_and_unstored_blocks():
    image, mask = synthetic("RGB", size=(64, 48), seed=2)
    pixels, mask = as_array(image), mask.astype(np.uint8)
    img = read_jpeg(jpeg_of(pixels, 75))
    coef = requantise(img, pixels, mask, 10.0 * float(np.mean(img.qtables[0])) ** 2)
    assert np.array_equal(coef[:, 0], img.coef[:, 0])
    changed = np.any(coef != img.coef, axis=1)
    assert changed.any()
    stored = np.zeros(len(coef), bool)
    for c, keep in zip(img.components, kept_blocks(mask, img.components)):
        grid = np.arange(c.offset, c.offset + c.rows * c.stride).reshape(c.rows, c.stride)[: c.nby, : c.nbx]
        stored[grid[keep]] = True
    assert not changed[~stored].any()
    # it only ever moves a coefficient toward zero or to a least-squares value: a large
    # lambda leaves fewer nonzero coefficients
    assert np.count_nonzero(coef) < np.count_nonzero(img.coef)


def test_forward_model_matches_libjpeg():
    # The unquantised coefficients the RDO starts from round to libjpeg's own almost always.
    image, _ = photo("hsd-232")
    pixels = as_array(image)
    img = read_jpeg(jpeg_of(pixels, 90))
    planes = _planes(pixels)
    agree = []
    for ci, c in enumerate(img.components):
        x = _blocks(_downsample(planes[ci], img.hmax // c.h, img.vmax // c.v, c).astype(float) - 128, c)
        from peterpan_format.jpeg.quantise import BASIS

        ours = np.rint((x @ BASIS.T) / img.qtables[ci].astype(float))
        agree.append(np.mean(ours == img.blocks(ci)))
    assert min(agree) > 0.97  # libjpeg's integer DCT rounds differently near half steps


def test_subject_error_is_exact():
    image, mask = synthetic("RGB", size=(40, 32), seed=5)
    pixels = as_array(image)
    img = read_jpeg(jpeg_of(pixels, 60))
    assert subject_error(img, pixels, mask.astype(np.uint8)) == jpeg_error(image, mask, 60)


def test_high_from_a_jpeg_file_keeps_the_smaller_exact_subject(tmp_path):
    # An image opened from a JPEG: its own coefficients (exact) compete with the requantised
    # ones; at quality 100 the file's own (quality 90) are the smaller, and exact.
    image, mask = synthetic("RGB", size=(48, 40), seed=9)
    path = tmp_path / "photo.jpg"
    image.save(path, quality=90)
    with Image.open(path) as im:
        data = encode(im, mask=mask, subject="high", subject_quality=100)
        np.testing.assert_array_equal(as_array(decode(data))[mask], as_array(im)[mask])
    assert subject_coding(data) == 4


def test_high_too_wide_for_jpeg_is_a_value_error():
    image = Image.new("RGB", (65501, 2), (10, 20, 30))
    mask = np.zeros((2, 65501), bool)
    mask[:, :3] = True
    with pytest.raises(ValueError, match="JPEG"):
        encode(image, mask=mask, subject="high", background_scale=8)
