"""Pillow integration: lazy open, verify, draft/thumbnail, Parser feeding, limits, autoload."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageFile

import peterpan_format
from peterpan_format import container
from conftest import as_array, decode, encode, synthetic


@pytest.fixture(scope="module")
def rgb_file():
    image, mask = synthetic("RGB", size=(96, 64))
    return image, mask, encode(image, mask=mask, background_scale=4)


def test_open_reads_only_the_header(rgb_file):
    _, _, data = rgb_file
    first_layer = data.index(b"BGND") - 4
    with Image.open(io.BytesIO(data[:first_layer + 8])) as im:  # pixels missing
        assert (im.format, im.mode, im.size) == ("PPAN", "RGB", (96, 64))
        assert im.info["background_scale"] == 4
        with pytest.raises(OSError):
            im.load()


def test_not_a_ppan_file():
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\0" * 40))


def test_verify(rgb_file):
    _, _, data = rgb_file
    with Image.open(io.BytesIO(data)) as im:
        im.verify()
    broken = bytearray(data)
    broken[len(data) // 2] ^= 0x40
    with pytest.raises((OSError, SyntaxError)):
        with Image.open(io.BytesIO(bytes(broken))) as im:
            im.verify()


def test_draft_returns_the_background_layer(rgb_file):
    image, _, data = rgb_file
    with Image.open(io.BytesIO(data)) as im:
        assert im.draft("RGB", (24, 16)) == ("RGB", (0, 0, 24.0, 16.0))
        assert im.size == (24, 16)
        im.load()
        small = as_array(im)
    start = data.index(b"BGND") + 4 + 9  # chunk data: coding, width, height, then the WebP
    length = int.from_bytes(data[start - 17 : start - 13], "big") - 9
    with Image.open(io.BytesIO(data[start : start + length])) as webp:
        np.testing.assert_array_equal(small, as_array(webp))
    with Image.open(io.BytesIO(data)) as im:
        assert im.draft("RGB", (30, 20)) is None  # larger than the background: full decode
        assert im.size == (96, 64)


def test_thumbnail_and_reduce(rgb_file):
    _, _, data = rgb_file
    with Image.open(io.BytesIO(data)) as im:
        im.thumbnail((20, 20))
        assert im.size == (20, 13)
    with Image.open(io.BytesIO(data)) as im:
        assert im.reduce(2).size == (48, 32)


@pytest.mark.parametrize("piece", [1, 7, 1000])
def test_parser_feeding(rgb_file, piece):
    _, _, data = rgb_file
    parser = ImageFile.Parser()
    for i in range(0, len(data), piece):
        parser.feed(data[i : i + piece])
    fed = parser.close()
    np.testing.assert_array_equal(as_array(fed), as_array(decode(data)))


def test_parser_incomplete(rgb_file):
    _, _, data = rgb_file
    parser = ImageFile.Parser()
    parser.feed(data[:-20])
    with pytest.raises(OSError):
        parser.close()


def test_decompression_bomb():
    header = container.Header(60000, 60000, "RGB", 8, 0)
    data = container.SIGNATURE + container.pack_chunk(container.HEAD, header.pack())
    data += container.pack_chunk(container.BGND, b"")
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))


def test_truncated_file(rgb_file):
    image, mask, data = rgb_file
    mask_start = data.index(b"MASK") - 4
    truncated = data[: mask_start + 10]
    with Image.open(io.BytesIO(truncated)) as im, pytest.raises(OSError, match="truncated"):
        im.load()
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with Image.open(io.BytesIO(truncated)) as im:
            im.load()
            partial = as_array(im)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    full = as_array(decode(data))
    assert not np.array_equal(partial[mask], full[mask])  # no subject yet
    ys, xs = np.nonzero(mask)
    far = np.ones_like(mask)
    far[max(ys.min() - 9, 0) : ys.max() + 10, max(xs.min() - 9, 0) : xs.max() + 10] = False  # beyond the feather
    np.testing.assert_array_equal(partial[far], full[far])  # but the whole background


def test_atomic_save_keeps_old_file(tmp_path):
    image, mask = synthetic("RGB")
    path = tmp_path / "out.ppan"
    path.write_bytes(b"old")
    with pytest.raises(ValueError):
        peterpan_format.save(image, path, mask=np.ones((3, 3), bool))
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.ppan"]
    peterpan_format.save(image, path, mask=mask)
    with Image.open(path) as im:
        assert im.format == "PPAN"
    fresh = tmp_path / "fresh.ppan"
    umask = os.umask(0o027)
    try:
        peterpan_format.save(image, fresh, mask=mask)
    finally:
        os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o640  # a new file's usual permissions, not 0600


def _python(code, **env):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=120)
    return result.returncode, result.stdout.strip(), result.stderr


def test_any_pillow_program_opens_ppan(tmp_path, rgb_file):
    path = tmp_path / "x.ppan"
    path.write_bytes(rgb_file[2])
    code = f"from PIL import Image; im = Image.open({str(path)!r}); im.load(); print(im.format, im.size)"
    assert _python(code)[1] == "PPAN (96, 64)"
    rc, _, err = _python(code, PPAN_NO_AUTOLOAD="1")
    assert rc != 0 and "UnidentifiedImageError" in err


def test_importing_pillow_stays_light():
    code = ("import sys, PIL.Image; "
            "print(sorted(m for m in ('numpy', 'numba', 'torch', 'peterpan_format.codec') if m in sys.modules))")
    assert _python(code)[1] == "[]"


def test_decoding_never_imports_torch(tmp_path, rgb_file):
    path = tmp_path / "x.ppan"
    path.write_bytes(rgb_file[2])
    code = (f"import sys, peterpan_format; from PIL import Image; Image.open({str(path)!r}).load(); "
            "print('torch' in sys.modules)")
    assert _python(code)[1] == "False"


def test_saving_without_mask_and_without_segmenter_extra(monkeypatch):
    image, _ = synthetic("RGB")
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    from peterpan_format import masking
    masking._load_segmenter.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"peterpan-format\[segment\].*mask="):
            encode(image)
    finally:
        masking._load_segmenter.cache_clear()
