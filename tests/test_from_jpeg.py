"""JPEG in, .ppan out: SUBJ coding 4 through from_jpeg, Image.save and the ppan command."""

import io
import struct

import numpy as np
import pytest
from PIL import Image

import peterpan_format
from conftest import SHARED_DATA, as_array, decode
from peterpan_format.container import SUBJ, read_chunk, read_head
from peterpan_format.subject import CODINGS, NEAR


def jpeg_bytes(mode="RGB", size=(53, 41), seed=0, **params) -> bytes:
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * (4 + c) + y * (3 + 2 * c)) % 256 for c in range(3)], axis=2)
    pixels = np.clip(base + rng.integers(-25, 26, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(out, "JPEG", **params)
    return out.getvalue()


def blob(size=(53, 41)) -> np.ndarray:
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    return ((x - w * 0.4) / (w * 0.3)) ** 2 + ((y - h * 0.55) / (h * 0.3)) ** 2 <= 1


def subj_coding(data: bytes) -> int:
    fp = io.BytesIO(data)
    read_head(fp)
    while True:
        chunk_type, payload = read_chunk(fp)
        if chunk_type == SUBJ:
            return struct.unpack_from(">B", payload)[0]


def pillow_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return as_array(im)


@pytest.mark.parametrize(
    "mode, params",
    [
        ("RGB", {"quality": 90, "subsampling": 2}),
        ("RGB", {"quality": 75, "subsampling": 1}),
        ("RGB", {"quality": 95, "subsampling": 0}),
        ("RGB", {"quality": 60, "progressive": True}),
        ("L", {"quality": 85}),
        ("L", {"quality": 70, "progressive": True}),
    ],
)
def test_subject_decodes_as_pillow_decodes_the_jpeg(mode, params):
    data = jpeg_bytes(mode, **params)
    mask = blob()
    ppan = peterpan_format.from_jpeg(data, mask=mask)
    assert subj_coding(ppan) == CODINGS["jpeg"]
    image = decode(ppan)
    assert image.mode == mode
    np.testing.assert_array_equal(as_array(image)[mask], pillow_pixels(data)[mask])


def test_sources_path_bytes_and_file_object(tmp_path):
    data = jpeg_bytes()
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    mask = blob()
    results = {peterpan_format.from_jpeg(source, mask=mask) for source in (data, path, str(path), io.BytesIO(data))}
    assert len(results) == 1


def test_much_smaller_than_lossless_pixels():
    data = jpeg_bytes(size=(160, 120), quality=85)
    mask = blob((160, 120))
    kept = peterpan_format.from_jpeg(data, mask=mask)
    pixels = peterpan_format.from_jpeg(data, mask=mask, subject_coding="cm")
    assert subj_coding(pixels) == CODINGS["cm"]
    assert len(kept) < 0.75 * len(pixels)
    np.testing.assert_array_equal(as_array(decode(kept))[mask], as_array(decode(pixels))[mask])


def test_image_opened_from_a_jpeg_file_keeps_its_coefficients(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(jpeg_bytes())
    mask = blob()
    with Image.open(path) as im:
        auto, forced = io.BytesIO(), io.BytesIO()
        im.save(auto, format="PPAN", mask=mask)
        im.save(forced, format="PPAN", mask=mask, subject="jpeg")
        converted = im.convert("RGB")  # no longer "from a JPEG file": pixels are coded
    assert subj_coding(auto.getvalue()) == subj_coding(forced.getvalue()) == CODINGS["jpeg"]
    plain = io.BytesIO()
    converted.save(plain, format="PPAN", mask=mask)
    assert subj_coding(plain.getvalue()) == CODINGS["cm"]
    with pytest.raises(ValueError, match="opened from a JPEG"):
        converted.save(io.BytesIO(), format="PPAN", mask=mask, subject="jpeg")


def smooth_jpeg(path, size=(96, 72)) -> np.ndarray:
    """A photo-like JPEG at ``path`` (q90, 4:2:0): soft gradients and a darker disc."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    disc = ((x - w * 0.5) ** 2 + (y - h * 0.5) ** 2 <= (h * 0.3) ** 2)[:, :, None]
    base = np.stack([60 + x * 1.5, 90 + y * 1.2, 200 - x * 0.8], axis=2) - 50 * disc
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=90)
    return blob(size)


@pytest.mark.parametrize("given_mask", [True, False], ids=["mask", "segmenter"])
def test_headline_path_decodes_to_the_jpegs_pixels(tmp_path, given_mask):
    """Image.open("x.jpg") then im.save("x.ppan"): the subject is exactly what Pillow decoded
    from the JPEG, the rest a fair picture of it."""
    if not given_mask:
        pytest.importorskip("segmentation_models_pytorch")  # the [segment] extra
    mask = smooth_jpeg(tmp_path / "x.jpg")
    with Image.open(tmp_path / "x.jpg") as im:
        expected = as_array(im)
        im.save(tmp_path / "x.ppan", **({"mask": mask} if given_mask else {}))
    assert subj_coding((tmp_path / "x.ppan").read_bytes()) == CODINGS["jpeg"]
    stored = np.asarray(peterpan_format.read_mask(tmp_path / "x.ppan")) == 255
    assert stored.any() and (not given_mask or np.array_equal(stored, mask))
    with Image.open(tmp_path / "x.ppan") as out:
        assert (out.format, out.mode, out.size) == ("PPAN", "RGB", (96, 72))
        decoded = as_array(out)
    np.testing.assert_array_equal(decoded[stored], expected[stored])
    mse = np.mean((decoded.astype(float) - expected) ** 2)
    assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 30


def test_edited_image_is_never_trusted_to_its_jpeg(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(jpeg_bytes())
    mask = blob()
    with Image.open(path) as im:
        im.load()
        im.putpixel((21, 22), (1, 2, 3))  # a subject pixel the JPEG no longer reproduces
        assert mask[22, 21]
        out = io.BytesIO()
        im.save(out, format="PPAN", mask=mask)
        assert subj_coding(out.getvalue()) == CODINGS["cm"]
        np.testing.assert_array_equal(as_array(decode(out.getvalue()))[mask], as_array(im)[mask])
        with pytest.raises(ValueError, match="cannot keep the JPEG's coefficients"):
            im.save(io.BytesIO(), format="PPAN", mask=mask, subject="jpeg")


def test_jpeg_subject_rejects_other_codings():
    with pytest.raises(ValueError, match="subject='jpeg'"):
        peterpan_format.EncodeOptions(subject="jpeg", subject_coding="cm")


def test_metadata_is_kept():
    exif = Image.Exif()
    exif[0x010F] = "PeterPan Camera"
    exif[0x0112] = 6  # orientation: kept as metadata, the mask is in stored orientation
    data = jpeg_bytes(quality=80, exif=exif.tobytes(), icc_profile=b"\0icc" * 50)
    with Image.open(io.BytesIO(peterpan_format.from_jpeg(data, mask=blob()))) as im:
        assert im.info["icc_profile"] == b"\0icc" * 50
        assert im.getexif()[0x010F] == "PeterPan Camera"
        assert im.getexif()[0x0112] == 6


def test_cmyk_and_non_jpeg_inputs():
    rgb = jpeg_bytes()
    with Image.open(io.BytesIO(rgb)) as im:
        cmyk = io.BytesIO()
        im.convert("CMYK").save(cmyk, "JPEG")
    mask = blob()
    ppan = peterpan_format.from_jpeg(cmyk.getvalue(), mask=mask)  # 4 components: pixels are coded
    assert subj_coding(ppan) == CODINGS["cm"]
    with Image.open(io.BytesIO(cmyk.getvalue())) as im:
        np.testing.assert_array_equal(as_array(decode(ppan))[mask], as_array(im.convert("RGB"))[mask])
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    with pytest.raises(ValueError, match="needs a JPEG"):
        peterpan_format.from_jpeg(png.getvalue(), mask=np.ones((8, 8), bool))
    with pytest.raises(ValueError, match="needs a JPEG"):
        peterpan_format.from_jpeg(png.getvalue(), mask=np.ones((8, 8), bool), subject="jpeg")


def test_empty_mask_and_whole_image():
    data = jpeg_bytes()
    empty = peterpan_format.from_jpeg(data, mask=np.zeros((41, 53), bool), no_subject="background")
    assert subj_coding(empty) == 0
    whole = peterpan_format.from_jpeg(data, mask=np.ones((41, 53), bool))
    assert subj_coding(whole) == CODINGS["jpeg"]
    np.testing.assert_array_equal(as_array(decode(whole)), pillow_pixels(data))


def test_shared_photo_subject_exact():
    path = SHARED_DATA / "images" / "hsd-232.jpg"
    if not path.exists():
        pytest.skip("shared data not found")
    with Image.open(SHARED_DATA / "masks" / "hsd-232.png") as m:
        mask = np.asarray(m) > 0
    data = path.read_bytes()
    ppan = peterpan_format.from_jpeg(path, mask=mask)
    assert subj_coding(ppan) == CODINGS["jpeg"]
    assert len(ppan) < 0.5 * len(data)
    np.testing.assert_array_equal(as_array(decode(ppan))[mask], pillow_pixels(data)[mask])


@pytest.mark.parametrize("max_error", [1, 8])
def test_near_lossless_keeps_the_smaller_of_coefficients_and_coding_5(max_error):
    data = jpeg_bytes(size=(96, 80), quality=90)
    mask = blob((96, 80))
    params = {"mask": mask, "subject": "near-lossless", "max_error": max_error}
    auto = peterpan_format.from_jpeg(data, **params)
    sizes = {coding: len(peterpan_format.from_jpeg(data, subject_coding=coding, **params)) for coding in ("jpeg", "cm")}
    assert len(auto) == min(sizes.values())
    assert subj_coding(auto) == (CODINGS["jpeg"] if sizes["jpeg"] <= sizes["cm"] else NEAR)
    error = np.abs(as_array(decode(auto)).astype(int) - pillow_pixels(data).astype(int))[mask]
    assert error.max() <= max_error
