"""Metadata rules (spec §9): what is malformed, where metadata counts, and what the
encoder does with a malformed value it is given or inherits."""

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import as_array, encode, synthetic
from spec_reader import read_ppan


@pytest.fixture(scope="module")
def rgb():
    return synthetic("RGB", size=(64, 48))


@pytest.mark.parametrize("key, value, message", [
    ("exif", b"Exif\x00\x00JFIF junk", "TIFF structure"),
    ("exif", b"not exif at all", "TIFF structure"),
    ("xmp", b"<x:xmpmeta>\xff\xfe</x:xmpmeta>", "UTF-8"),
])
def test_malformed_metadata_given_to_save_is_refused(rgb, key, value, message):
    image, mask = rgb
    with pytest.raises(ValueError, match=message):
        encode(image, mask=mask, **{key: value})


def test_malformed_metadata_inherited_from_info_is_left_out_with_a_warning(rgb):
    image, mask = rgb
    image = image.copy()
    image.info.update(exif=b"Exif\x00\x00junk", xmp=b"\xff", icc_profile=b"kept")
    with pytest.warns(UserWarning) as caught:
        data = encode(image, mask=mask)
    assert sorted(str(w.message).split("'s ")[1].split()[0] for w in caught) == ["exif", "xmp"]
    with Image.open(io.BytesIO(data)) as im:
        assert "exif" not in im.info and "xmp" not in im.info and im.info["icc_profile"] == b"kept"
    assert encode(image, mask=mask, exif=None, xmp=None)  # dropping them explicitly: no warning


def test_valid_metadata_in_both_byte_orders_and_as_text(rgb):
    image, mask = rgb
    for exif in (b"II*\x00\x08\x00\x00\x00\x00\x00", b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00"):
        with Image.open(io.BytesIO(encode(image, mask=mask, exif=exif, xmp="<x>é</x>"))) as im:
            assert im.info["exif"] == b"Exif\x00\x00" + exif.removeprefix(b"Exif\x00\x00")
            assert im.info["xmp"] == "<x>é</x>".encode()


def test_metadata_after_the_background_is_skipped_by_plugin_and_spec_reader_alike(rgb):
    image, mask = rgb
    data = encode(image, mask=mask, icc_profile=b"profile")
    head_end = data.index(b"iccp") - 4
    iccp_end = data.index(b"BGND") - 4
    iccp = data[head_end:iccp_end]
    moved = data[:head_end] + data[iccp_end : data.index(b"MASK") - 4] + iccp + data[data.index(b"MASK") - 4 :]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Image.open(io.BytesIO(moved)) as im:
            im.load()
            assert "icc_profile" not in im.info
            pixels = as_array(im)
    assert any("skipping PPAN iccp chunk after the layers began" in str(w.message) for w in caught)
    spec = read_ppan(moved)
    assert spec.metadata == {} and spec.chunks[1:3] == ["BGND", "iccp"]
    np.testing.assert_array_equal(spec.pixels, pixels)
    assert read_ppan(data).metadata == {"iccp": b"profile"}


def test_header_fields_in_info(rgb):
    image, mask = rgb
    with Image.open(io.BytesIO(encode(image, mask=mask, background_scale=3, feather=5))) as im:
        assert (im.info["background_scale"], im.info["feather"]) == (3, 5)


