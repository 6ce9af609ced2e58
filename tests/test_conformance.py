"""Files from the project's encoder, decoded by a reader written from spec/FORMAT.md alone.

The plugin and the spec reader must agree on every pixel (both decode the embedded
WebP with Pillow), and the subject must be the original's.
"""

import json
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import as_array, decode, encode, photo, synthetic
from spec_reader import SpecError, read_ppan


def chunk_body(data: bytes, ctype: bytes) -> bytes:
    """The data of the first chunk of type `ctype`, walking the chunks (§2, §2.1)."""
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == ctype:
            return data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raise AssertionError(f"no {ctype!r} chunk")


def replace_chunk(data: bytes, ctype: bytes, body: bytes) -> bytes:
    """`data` with the first `ctype` chunk's data replaced by `body` (length, CRC redone)."""
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == ctype:
            new = len(body).to_bytes(4, "big") + ctype + body + zlib.crc32(ctype + body).to_bytes(4, "big")
            return data[:pos] + new + data[pos + 12 + length :]
        pos += 12 + length
    raise AssertionError(f"no {ctype!r} chunk")


def check_near(image: Image.Image, mask: np.ndarray, max_error=None, **params):
    """Like `check`, for SUBJ coding 5 (§6.5): the subject is within N of the original.

    Returns the spec reader's image and the file's N (checked against `max_error` if given).
    """
    if max_error is not None:
        params["max_error"] = max_error
    data = encode(image, mask=mask, **params)
    subj = chunk_body(data, b"SUBJ")
    assert subj[0] == 5  # coding 5
    n = subj[17]  # u8 N, the first byte of the coding-5 payload
    assert 1 <= n <= 31
    if max_error is not None:
        assert n == max_error
    spec = read_ppan(data)
    ours = as_array(decode(data))
    assert (spec.mode, spec.width, spec.height) == (image.mode, image.width, image.height)
    np.testing.assert_array_equal(spec.mask, mask)
    np.testing.assert_array_equal(spec.pixels, ours)
    error = np.abs(spec.pixels[mask].astype(int) - as_array(image)[mask].astype(int))
    assert error.max() <= n
    return spec, n, error


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


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("max_error", [1, 3, 31])
def test_near_lossless(mode, max_error):
    image, mask = synthetic(mode, size=(29, 23), seed=max_error)
    _, _, error = check_near(
        image, mask, max_error, subject="near-lossless", background_scale=3, feather=2
    )
    assert error.max() > 0  # the noise makes it lossy for real


def test_near_lossless_saturated():
    # Hard 0 <-> 255 jumps and colour differences of ±255: where §6.5's clamps matter.
    rng = np.random.default_rng(7)
    pixels = rng.choice(np.array([0, 1, 2, 253, 254, 255], np.uint8), (19, 23, 4))
    pixels[:9, :11] = 255
    pixels[9:, 11:] = 0
    pixels[::3, :, 0] = 255 - pixels[::3, :, 0]
    mask = rng.random((19, 23)) < 0.7
    for mode, channels in (("L", 1), ("RGB", 3), ("RGBA", 4)):
        arr = pixels[:, :, 0] if channels == 1 else pixels[:, :, :channels]
        image = Image.fromarray(np.ascontiguousarray(arr), mode)
        for max_error in (1, 31):
            check_near(image, mask, max_error, subject="near-lossless")


def test_near_lossless_photo_crop():
    image, mask = photo("hsd-232")
    box = (100, 160, 180, 230)  # across the subject's border
    crop = mask[box[1] : box[3], box[0] : box[2]]
    assert 0.2 < crop.mean() < 0.8
    check_near(image.crop(box), crop, 2, subject="near-lossless", feather=3)


def test_near_lossless_rejections_agree():
    # A valid coding-5 SUBJ chunk made invalid (§6.5), CRC redone: both decoders reject.
    image, mask = synthetic("RGB", size=(17, 13))
    data = encode(image, mask=mask, subject="near-lossless", max_error=2)
    subj = chunk_body(data, b"SUBJ")
    head, n, stream = subj[:17], subj[17], subj[18:]
    assert (head[0], n) == (5, 2)
    for bad in (
        head,  # empty payload
        head + b"\x00" + stream,  # N = 0
        head + b"\x20" + stream,  # N = 32
        head + bytes([n]) + stream[:-1],  # stream ends early
        head + bytes([n]) + stream + b"\x00",  # a byte left over
    ):
        broken = replace_chunk(data, b"SUBJ", bad)
        with pytest.raises(SpecError):
            read_ppan(broken)
        with pytest.raises(OSError):
            decode(broken)


def test_subject_high_rgba_is_coding5():
    image, mask = synthetic("RGBA", size=(29, 23), seed=4)
    check_near(image, mask, subject="high", background_scale=2, feather=1)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_subject_high_is_coding4(mode):
    # The DCT-coded subject (coding 4 fed by an in-memory JPEG): both decoders agree.
    image, mask = synthetic(mode, size=(37, 29), seed=4)
    data = encode(image, mask=mask, subject="high", subject_quality=80, background_scale=2, feather=1)
    assert chunk_body(data, b"SUBJ")[0] == 4
    spec = read_ppan(data)
    np.testing.assert_array_equal(spec.mask, mask)
    np.testing.assert_array_equal(spec.pixels, as_array(decode(data)))


@pytest.mark.parametrize("scale, feather", [(1, 0), (2, 1), (4, 4), (5, 3), (8, 8)])
def test_scales_and_feathers(scale, feather):
    image, mask = synthetic("RGB", size=(33, 26), seed=scale)
    spec = check(image, mask, background_scale=scale, feather=feather)
    assert (spec.scale, spec.feather) == (scale, feather)


def test_empty_and_full_masks():
    image, _ = synthetic("RGB", size=(17, 13))
    check(image, np.zeros((13, 17), bool), no_subject="background")
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


CORPUS = Path(__file__).resolve().parent / "corpus"
_CHUNK_OF_INFO = {"exif": "exif", "icc_profile": "iccp", "xmp": "xmpd", "subject_classes": "clas"}


@pytest.mark.parametrize("name", sorted(n for n, e in json.loads((CORPUS / "expected.json").read_text()).items()
                                        if e["at"] == "none"))
def test_corpus_files_that_decode_decode_alike(name):
    """The corpus files whose faults are skipped (§2.1, §9): same pixels, same metadata left out."""
    data = (CORPUS / name).read_bytes()
    absent = json.loads((CORPUS / "expected.json").read_text())[name]["absent_info"]
    spec = read_ppan(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoded = decode(data)
    np.testing.assert_array_equal(spec.pixels, as_array(decoded))
    assert {_CHUNK_OF_INFO[k] for k in decoded.info if k in _CHUNK_OF_INFO and k != "subject_classes"} == set(
        spec.metadata)
    assert not absent or _CHUNK_OF_INFO[absent] not in spec.metadata
