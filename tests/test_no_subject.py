"""The ``no_subject`` policy: a photo with no subject is never silently reduced to its background."""

import io

import numpy as np
import pytest
from PIL import Image

import peterpan_format
from conftest import as_array, decode, encode, synthetic


def _empty(image):
    return np.zeros((image.height, image.width), bool)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_keep_is_the_default_and_codes_the_whole_frame(mode):
    image, _ = synthetic(mode)
    data = encode(image, mask=_empty(image))
    decoded = decode(data)
    np.testing.assert_array_equal(as_array(decoded), as_array(image))
    assert Image.open(io.BytesIO(data)).info["no_subject"] == "keep"


def test_keep_follows_the_subject_mode():
    image, _ = synthetic("RGB")
    decoded = decode(encode(image, mask=_empty(image), subject="near-lossless", max_error=3))
    error = np.abs(as_array(decoded).astype(int) - as_array(image))
    assert 0 < error.max() <= 3


def test_background_stores_the_background_alone():
    image, _ = synthetic("RGB")
    data = encode(image, mask=_empty(image), no_subject="background")
    decoded = decode(data)
    assert Image.open(io.BytesIO(data)).info["no_subject"] == "background"
    assert not np.array_equal(as_array(decoded), as_array(image))
    assert len(data) < len(encode(image, mask=_empty(image)))


def test_error_refuses_and_writes_nothing(tmp_path):
    image, _ = synthetic("RGB")
    with pytest.raises(ValueError, match="no subject found"):
        encode(image, mask=_empty(image), no_subject="error")
    target = tmp_path / "x.ppan"
    with pytest.raises(ValueError, match="no subject found"):
        peterpan_format.save(image, target, mask=_empty(image), no_subject="error")
    assert list(tmp_path.iterdir()) == []


def test_a_subject_leaves_no_trace_and_bad_values_are_refused():
    image, mask = synthetic("RGB")
    assert "no_subject" not in Image.open(io.BytesIO(encode(image, mask=mask))).info
    assert "no_subject" not in Image.open(io.BytesIO(encode(image, mask=mask, no_subject="error"))).info
    with pytest.raises(ValueError, match="no_subject must be one of"):
        encode(image, mask=mask, no_subject="blur")


def test_policies_apply_to_what_a_segmenter_finds():
    image, _ = synthetic("RGB")
    finds_nothing = lambda im: np.zeros((im.height, im.width), np.uint8)  # noqa: E731
    decoded = decode(encode(image, segmenter=finds_nothing))
    np.testing.assert_array_equal(as_array(decoded), as_array(image))
    with pytest.raises(ValueError, match="no subject found"):
        encode(image, segmenter=finds_nothing, no_subject="error")


def test_jpeg_source_keeps_every_coefficient_and_stays_smaller():
    image, _ = synthetic("RGB", size=(160, 120))
    source = io.BytesIO()
    image.save(source, "JPEG", quality=92)
    data = peterpan_format.from_jpeg(source.getvalue(), mask=_empty(image))
    with Image.open(source) as jpeg:
        expected = as_array(jpeg.convert("RGB"))
    np.testing.assert_array_equal(as_array(decode(data)), expected)
    assert len(data) < len(source.getvalue())


def test_the_metadata_value_is_checked():
    from peterpan_format import metadata

    assert metadata.unpack({b"nsub": b"\0keep"}) == {"no_subject": "keep"}
    with pytest.warns(UserWarning, match="nsub"):
        assert metadata.unpack({b"nsub": b"\0blur"}) == {}
