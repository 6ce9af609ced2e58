"""Files from the project's encoder, decoded by a reader written from spec/FORMAT.md alone.

The plugin and the spec reader must agree on every pixel (both decode the embedded
WebP with Pillow), and the subject must be the original's.
"""


import numpy as np
import pytest
from PIL import Image

from conftest import as_array, decode, encode, photo, synthetic
from spec_reader import SpecError, read_ppan


def check(image: Image.Image, mask: np.ndarray, **params):
    data = encode(image, mask=mask, **params)
    spec = read_ppan(data)
    ours = as_array(decode(data))
    assert (spec.mode, spec.width, spec.height) == (image.mode, image.width, image.height)
    np.testing.assert_array_equal(spec.mask, mask)
    np.testing.assert_array_equal(spec.pixels[mask], as_array(image)[mask])
    np.testing.assert_array_equal(spec.pixels, ours)
    return spec


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("coding", ["cm", "webp", "med"])
def test_modes_and_codings(mode, coding):
    image, mask = synthetic(mode, size=(29, 23), seed=1)
    check(image, mask, subject_coding=coding, background_scale=3, feather=2)


@pytest.mark.parametrize("scale, feather", [(1, 0), (2, 1), (4, 4), (5, 3), (8, 8)])
def test_scales_and_feathers(scale, feather):
    image, mask = synthetic("RGB", size=(33, 26), seed=scale)
    spec = check(image, mask, background_scale=scale, feather=feather)
    assert (spec.scale, spec.feather) == (scale, feather)


def test_empty_and_full_masks():
    image, _ = synthetic("RGB", size=(17, 13))
    check(image, np.zeros((13, 17), bool))
    check(image, np.ones((13, 17), bool))


def test_metadata_chunks():
    image, mask = synthetic("RGB", size=(17, 13))
    spec = check(image, mask, icc_profile=b"icc" * 100, xmp="<x/>")
    assert spec.metadata["iccp"] == b"icc" * 100
    assert spec.metadata["xmpd"] == b"<x/>"
    assert spec.chunks == ["HEAD", "iccp", "xmpd", "BGND", "MASK", "SUBJ", "DONE"]


def test_real_photo_crop():
    image, mask = photo("hsd-232")
    box = (100, 160, 220, 270)  # across the subject's border
    crop = mask[box[1] : box[3], box[0] : box[2]]
    assert 0.2 < crop.mean() < 0.8
    spec = check(image.crop(box), crop, feather=3)
    assert spec.chunks[-2:] == ["SUBJ", "DONE"]


def test_spec_reader_rejects_what_the_plugin_rejects():
    image, mask = synthetic("RGB", size=(17, 13))
    data = bytearray(encode(image, mask=mask))
    data[data.index(b"MASK") + 6] ^= 0xFF  # corrupt the mask payload (CRC now wrong)
    with pytest.raises(SpecError):
        read_ppan(bytes(data))
    with pytest.raises(OSError):
        decode(bytes(data))
