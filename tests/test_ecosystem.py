"""Behaving like the sibling Pillow plugins: option names, thumbnails, MIME type, save_all,
reading the mask back and the lazy start-up hook."""

import io
import mimetypes
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import peterpan_format
from peterpan_format import codec
from conftest import as_array, decode, encode, synthetic


@pytest.fixture(scope="module")
def rgb():
    return synthetic("RGB", size=(64, 48))


# --- quality= and lossless= ----------------------------------------------------------------


def test_quality_is_the_subject_quality_of_the_high_mode(rgb):
    image, mask = rgb
    assert encode(image, mask=mask, quality=70) == encode(image, mask=mask, subject="high", subject_quality=70)
    assert encode(image, mask=mask, quality=70, subject="high") == encode(image, mask=mask, quality=70,
                                                                          subject_quality=70)
    assert encode(image, mask=mask, quality=70) != encode(image, mask=mask, quality=95)


def test_lossless_names_the_subject_mode(rgb):
    image, mask = rgb
    lossless = encode(image, mask=mask, lossless=True)
    assert lossless == encode(image, mask=mask, subject="lossless")
    np.testing.assert_array_equal(as_array(decode(lossless))[mask], as_array(image)[mask])
    assert encode(image, mask=mask, lossless=False) == encode(image, mask=mask, subject="high")
    assert encode(image, mask=mask, lossless=False, subject="near-lossless") == encode(
        image, mask=mask, subject="near-lossless")


@pytest.mark.parametrize("params, message", [
    ({"quality": 80, "subject": "lossless"}, "subject quality of subject='high'"),
    ({"quality": 80, "subject": "near-lossless"}, "subject quality of subject='high'"),
    ({"quality": 80, "subject_quality": 90}, "contradicts subject_quality"),
    ({"quality": 80, "lossless": True}, "lossless=True takes no quality"),
    ({"lossless": True, "subject": "high"}, "contradicts subject='high'"),
    ({"lossless": False, "subject": "lossless"}, "contradicts subject='lossless'"),
    ({"lossless": False, "subject": "jpeg"}, "contradicts subject='jpeg'"),
    ({"quality": 0}, "quality must be an integer in 1..100"),
    ({"quality": 101}, "quality must be an integer in 1..100"),
    ({"quality": "keep"}, "quality must be an integer"),
    ({"lossless": 1}, "lossless must be True or False"),
])
def test_contradictions_are_refused(rgb, params, message):
    image, mask = rgb
    with pytest.raises(ValueError, match=message):
        encode(image, mask=mask, **params)


# --- thumbnail() and draft() ----------------------------------------------------------------


@pytest.fixture(scope="module")
def wide_file():
    """A 2668 x 1500 file (background 667 x 375 at scale 4) with a small subject."""
    image = Image.new("RGB", (2668, 1500), (90, 120, 150))
    mask = np.zeros((1500, 2668), bool)
    mask[700:740, 1300:1340] = True
    return encode(image, mask=mask)


def test_thumbnail_uses_the_background_whenever_it_is_large_enough(wide_file, monkeypatch):
    reduced = []
    real = codec.decode
    monkeypatch.setattr(codec, "decode", lambda *a: reduced.append(a[2]) or real(*a))
    for box, size in [((256, 256), (256, 144)), ((256, 144), (256, 144)), ((320, 100), (178, 100))]:
        with Image.open(io.BytesIO(wide_file)) as im:
            im.thumbnail(box)
            assert im.size == size
    assert reduced == [True, True, True]
    with Image.open(io.BytesIO(wide_file)) as im:
        im.thumbnail((1000, 1000))  # needs 2000 px wide before the last resize: more than 667
        assert im.size == (1000, 562)
    assert reduced == [True, True, True, False]


def test_draft_returns_at_least_the_image_fitted_into_the_size(wide_file):
    for size, expected in [((667, 10000), (667, 375)), ((10000, 375), (667, 375)), ((668, 376), None)]:
        with Image.open(io.BytesIO(wide_file)) as im:
            result = im.draft(None, size)
            assert (result and im.size) == expected
            if result:
                assert result == ("RGB", (0, 0, 667.0, 375.0))


# --- MIME type, save_all ----------------------------------------------------------------------


def test_mimetypes_knows_the_extension():
    assert mimetypes.guess_type("photo.ppan") == ("image/x-ppan", None)
    assert Image.MIME["PPAN"] == "image/x-ppan"


def test_save_all_saves_a_single_frame_and_refuses_more(rgb):
    image, mask = rgb
    assert encode(image, mask=mask, save_all=True) == encode(image, mask=mask)
    with pytest.raises(ValueError, match="one image, not 2 frames"):
        encode(image, mask=mask, save_all=True, append_images=[image])
    with pytest.raises(ValueError, match="one image, not 2 frames"):
        encode(image, mask=mask, append_images=[image])  # Pillow sends these to save_all too
    animation = io.BytesIO()
    image.save(animation, "GIF", save_all=True, append_images=[image.rotate(90)])
    with Image.open(animation) as gif, pytest.raises(ValueError, match="not 2 frames"):
        gif.save(io.BytesIO(), "PPAN", save_all=True, mask=mask)


# --- read_mask() ------------------------------------------------------------------------------


def test_read_mask_returns_the_stored_mask_without_decoding_pixels(rgb, tmp_path, monkeypatch):
    image, mask = rgb
    path = tmp_path / "x.ppan"
    path.write_bytes(encode(image, mask=mask))
    monkeypatch.setattr(codec, "decode", None)  # no layer is decoded
    for source in (path, str(path), io.BytesIO(path.read_bytes())):
        stored = peterpan_format.read_mask(source)
        assert (stored.mode, stored.size) == ("L", image.size)
        np.testing.assert_array_equal(np.asarray(stored), np.where(mask, 255, 0))


def test_read_mask_can_be_passed_back_when_resaving(rgb):
    image, mask = rgb
    data = encode(image, mask=mask)
    stored = peterpan_format.read_mask(io.BytesIO(data))
    with Image.open(io.BytesIO(data)) as im:
        resaved = encode(im, mask=stored)
    np.testing.assert_array_equal(np.asarray(peterpan_format.read_mask(io.BytesIO(resaved))), np.asarray(stored))


def test_read_mask_errors(rgb):
    image, mask = rgb
    png = io.BytesIO()
    image.save(png, "PNG")
    with pytest.raises(Image.UnidentifiedImageError):
        peterpan_format.read_mask(png)
    data = encode(image, mask=mask)
    with pytest.raises(OSError, match="truncated"):
        peterpan_format.read_mask(io.BytesIO(data[: data.index(b"MASK") + 8]))
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        with pytest.raises(ValueError, match="closed"):
            im.read_mask()


# --- the start-up hook ------------------------------------------------------------------------


def _python(code, **env):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_the_hook_imports_nothing_until_a_ppan_file_is_opened(tmp_path, rgb):
    image, mask = rgb
    path = tmp_path / "x.ppan"
    path.write_bytes(encode(image, mask=mask))
    image.save(tmp_path / "x.png")
    code = (
        "import sys; from PIL import Image\n"
        "def loaded(): return 'peterpan_format' in sys.modules\n"
        "print(loaded(), Image.MIME['PPAN'], Image.registered_extensions()['.ppan'])\n"
        f"Image.open({str(tmp_path / 'x.png')!r}).load(); print(loaded())\n"
        f"im = Image.open({str(path)!r}); print(loaded(), im.format, im.size)\n"
    )
    assert _python(code).splitlines() == ["False image/x-ppan PPAN", "False", "True PPAN (64, 48)"]


def test_the_hook_saves_through_the_plugin(tmp_path, rgb):
    image, mask = rgb
    np.save(tmp_path / "mask.npy", mask)
    image.save(tmp_path / "x.png")
    code = (
        "import numpy as np; from PIL import Image\n"
        f"im = Image.open({str(tmp_path / 'x.png')!r})\n"
        f"im.save({str(tmp_path / 'x.ppan')!r}, mask=np.load({str(tmp_path / 'mask.npy')!r}))\n"
        f"im.save({str(tmp_path / 'y.ppan')!r}, save_all=True, mask=np.load({str(tmp_path / 'mask.npy')!r}))\n"
    )
    _python(code)
    assert (tmp_path / "x.ppan").read_bytes() == (tmp_path / "y.ppan").read_bytes() == encode(image, mask=mask)
