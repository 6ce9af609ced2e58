"""Encode and decode through Pillow: subject pixels bit-exact in every mode and coding."""

import io

import numpy as np
import pytest
from PIL import Image

from conftest import as_array, decode, encode, photo, synthetic
from peterpan_format import metadata


def assert_subject_exact(original: Image.Image, decoded: Image.Image, mask: np.ndarray):
    assert decoded.size == original.size and decoded.mode == original.mode
    np.testing.assert_array_equal(as_array(decoded)[mask], as_array(original)[mask])


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("coding", ["cm", "webp", "med"])
def test_subject_bit_exact(mode, coding):
    image, mask = synthetic(mode)
    decoded = decode(encode(image, mask=mask, subject_coding=coding))
    assert_subject_exact(image, decoded, mask)


def test_rgba_colour_under_zero_alpha_is_kept():
    image, mask = synthetic("RGBA")
    pixels = as_array(image).copy()
    pixels[::2, :, 3] = 0  # invisible, yet subject pixels keep their RGB
    image = Image.fromarray(pixels, "RGBA")
    for coding in ("cm", "webp", "med"):
        assert_subject_exact(image, decode(encode(image, mask=mask, subject_coding=coding)), mask)


@pytest.mark.parametrize("photo_id", ["ccp_0741", "cat_group0421_jpeg"])
def test_photo_subject_exact_and_background_close(photo_id):
    image, mask = photo(photo_id)
    data = encode(image, mask=mask)
    decoded = decode(data)
    assert_subject_exact(image, decoded, mask)
    error = as_array(decoded)[~mask].astype(float) - as_array(image)[~mask]
    psnr = 10 * np.log10(255**2 / np.mean(error**2))
    assert psnr > 22, psnr
    assert len(data) < 0.6 * image.width * image.height * 3


@pytest.mark.parametrize("scale", range(1, 9))
def test_every_scale(scale):
    image, mask = synthetic("RGB", size=(37, 29), seed=scale)
    decoded = decode(encode(image, mask=mask, background_scale=scale, feather=scale))
    assert_subject_exact(image, decoded, mask)


@pytest.mark.parametrize("mask_kind", ["empty", "full", "one pixel", "corner"])
def test_mask_extremes(mask_kind):
    image, _ = synthetic("RGB", size=(23, 17))
    mask = np.zeros((17, 23), bool)
    if mask_kind == "full":
        mask[:] = True
    elif mask_kind == "one pixel":
        mask[8, 11] = True
    elif mask_kind == "corner":
        mask[-1, -1] = True
    decoded = decode(encode(image, mask=mask, no_subject="background"))
    assert_subject_exact(image, decoded, mask)
    if mask_kind == "full":
        np.testing.assert_array_equal(as_array(decoded), as_array(image))


def test_one_by_one_image():
    image = Image.new("RGB", (1, 1), (10, 200, 30))
    assert decode(encode(image, mask=np.ones((1, 1), bool))).getpixel((0, 0)) == (10, 200, 30)
    assert decode(encode(image, mask=np.zeros((1, 1), bool), no_subject="background")).size == (1, 1)


@pytest.mark.parametrize("kind", ["bool array", "uint8 array", "L image", "1 image", "class ids"])
def test_mask_forms(kind):
    image, mask = synthetic("RGB")
    given = {
        "bool array": mask,
        "uint8 array": mask.astype(np.uint8) * 255,
        "L image": Image.fromarray(mask.astype(np.uint8) * 255),
        "1 image": Image.fromarray(mask),
        "class ids": mask.astype(np.uint8) * 3,
    }[kind]
    assert_subject_exact(image, decode(encode(image, mask=given)), mask)


@pytest.mark.parametrize("bad_mask", [
    np.ones((10, 10), bool),                  # wrong size
    np.ones((47, 61, 3), np.uint8),           # 3-D
    np.ones((47, 61), np.float32),            # float
    Image.new("RGB", (61, 47)),               # colour image
    Image.new("L", (60, 47)),                 # wrong size image
])
def test_bad_mask_is_value_error(bad_mask):
    image, _ = synthetic("RGB")
    with pytest.raises(ValueError):
        encode(image, mask=bad_mask)


@pytest.mark.parametrize("params", [
    {"background_scale": 0}, {"background_scale": 9}, {"background_scale": 2.5},
    {"background_quality": 101}, {"feather": -1}, {"feather": 33},
    {"subject": "jpeg2000"}, {"subject_coding": "png"},
    {"max_error": 2}, {"subject": "near-lossless", "max_error": 0}, {"subject": "near-lossless", "max_error": 32},
    {"subject": "high", "max_error": 2}, {"subject_quality": 90}, {"subject": "high", "subject_quality": 101},
    {"subject": "near-lossless", "subject_coding": "webp"}, {"subject": "high", "subject_coding": "med"},
])
def test_bad_options_are_value_errors(params):
    image, mask = synthetic("RGB")
    with pytest.raises(ValueError):
        encode(image, mask=mask, **params)


@pytest.mark.parametrize("mode, params, bound", [
    *[(mode, params, bound) for mode in ("L", "RGB", "RGBA") for params, bound in (
        ({"subject": "near-lossless"}, 2), ({"subject": "near-lossless", "max_error": 1}, 1),
        ({"subject": "near-lossless", "max_error": 31}, 31))],
    # "high" stays near-lossless where its subject cannot be DCT-coded
    ("RGBA", {"subject": "high"}, 1), ("RGBA", {"subject": "high", "subject_quality": 90}, 2),
    ("RGBA", {"subject": "high", "subject_quality": 50}, 10),
    ("RGB", {"subject": "high", "subject_coding": "cm"}, 1),
])
def test_near_lossless_and_high_stay_within_their_error(mode, params, bound):
    image, mask = synthetic(mode, seed=3)
    data = encode(image, mask=mask, **params)
    error = np.abs(as_array(decode(data)).astype(int) - as_array(image).astype(int))[mask]
    assert error.max() <= bound and (bound > 2 or error.max() == bound)  # the error is used, not wasted
    assert len(data) < len(encode(image, mask=mask))


def test_photo_near_lossless_psnr_and_size():
    image, mask = photo("hsd-232")
    lossless = encode(image, mask=mask)
    sizes = []
    for n in (1, 2, 4):
        data = encode(image, mask=mask, subject="near-lossless", max_error=n)
        error = as_array(decode(data)).astype(float)[mask] - as_array(image).astype(float)[mask]
        assert np.abs(error).max() <= n
        assert 10 * np.log10(255**2 / np.mean(error**2)) >= 20 * np.log10(255 / n)
        sizes.append(len(data))
    assert len(lossless) > sizes[0] > sizes[1] > sizes[2]


@pytest.mark.parametrize("mode, expected", [("1", "L"), ("P", "RGB"), ("LA", "RGBA"), ("PA", "RGBA")])
def test_converted_modes(mode, expected):
    image, mask = synthetic("RGB")
    source = image.convert(mode) if mode != "PA" else image.convert("P").convert("PA")
    decoded = decode(encode(source, mask=mask))
    assert decoded.mode == expected
    np.testing.assert_array_equal(as_array(decoded)[mask], as_array(source.convert(expected))[mask])


def test_palette_with_transparency_keeps_alpha():
    image, mask = synthetic("RGB")
    paletted = image.convert("P")
    paletted.info["transparency"] = 0
    assert decode(encode(paletted, mask=mask)).mode == "RGBA"


@pytest.mark.parametrize("mode", ["CMYK", "I", "F", "I;16"])
def test_unsupported_modes(mode):
    image = Image.new(mode, (8, 8))
    with pytest.raises(OSError, match="cannot write mode"):
        encode(image, mask=np.ones((8, 8), bool))


def test_feather_changes_only_background_near_subject():
    image, mask = synthetic("RGB", size=(80, 60))
    sharp = as_array(decode(encode(image, mask=mask, feather=0)))
    soft = as_array(decode(encode(image, mask=mask, feather=6)))
    changed = np.any(sharp != soft, axis=2)
    assert changed.any()
    assert not changed[mask].any()
    ys, xs = np.nonzero(changed)
    my, mx = np.nonzero(mask)
    # every changed pixel lies within 6 px (chebyshev) of the subject
    assert all(np.min(np.maximum(abs(my - y), abs(mx - x))) <= 6 for y, x in zip(ys, xs))


def test_metadata_round_trip():
    image, mask = synthetic("RGB")
    exif = Image.Exif()
    exif[0x010F] = "Peter Pan Cameras"
    icc = bytes(range(256)) * 20
    data = encode(image, mask=mask, exif=exif, icc_profile=icc, xmp="<x:xmpmeta/>")
    with Image.open(io.BytesIO(data)) as im:  # metadata known at open, before load
        assert im.info["icc_profile"] == icc
        assert im.info["xmp"] == b"<x:xmpmeta/>"
        assert im.getexif()[0x010F] == "Peter Pan Cameras"


def test_subject_classes_round_trip_and_malformed_skipped():
    image, mask = synthetic("RGB")
    classes = {"person": 1200, "chat noir \u00e9": 7}
    data = encode(image, mask=mask, subject_classes=classes)
    with Image.open(io.BytesIO(data)) as im:
        assert im.info["subject_classes"] == classes and list(im.info["subject_classes"]) == list(classes)
    with Image.open(io.BytesIO(encode(image, mask=mask))) as im:
        assert "subject_classes" not in im.info  # a given mask has no classes
    for bad in (b"", b"\0\0\0\1\0", b"\0\0\0\1\5abc", b"\0\0\0\1\1\xff", b"\0\0\0\1\1a\0\0\0\2\1a"):
        with pytest.warns(UserWarning, match="clas"):
            assert "subject_classes" not in metadata.unpack({b"clas": b"\0" + bad})
    for bad in ({"": 3}, {"a": None}, {"a": 2.5}, {"a": True}, {1: 5}, {"a": -1}, ["person"]):
        with pytest.raises(ValueError, match="subject.class"):
            encode(image, mask=mask, subject_classes=bad)
    with pytest.raises(ValueError, match="jpeg_source"):
        encode(image, mask=mask, jpeg_source="photo.jpg")


def test_metadata_inherited_from_source_image():
    image, mask = synthetic("RGB")
    image.info["icc_profile"] = b"profile" * 10
    with Image.open(io.BytesIO(encode(image, mask=mask))) as im:
        assert im.info["icc_profile"] == b"profile" * 10


def test_save_by_extension(tmp_path):
    image, mask = synthetic("RGB")
    path = tmp_path / "x.ppan"
    image.save(path, mask=mask)
    with Image.open(path) as im:
        assert im.format == "PPAN"
        assert_subject_exact(image, im, mask)
