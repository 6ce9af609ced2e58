"""Hostile files (issue #6): the malformed-file corpus, truncation, limits and safe writing.

tests/corpus/*.ppan are made by tests/corpus/make_corpus.py; tests/corpus/expected.json
says what each breaks and how the decoder must fail. Only SyntaxError, OSError,
ValueError, EOFError and Image.DecompressionBombError (and their subclasses) are allowed.
"""

import io
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

import peterpan_format
from peterpan_format import PpanImagePlugin, codec, container
from peterpan_format.container import BGND, MASK, SUBJ

from conftest import as_array, decode, encode, synthetic

CORPUS = Path(__file__).resolve().parent / "corpus"
MANIFEST = json.loads((CORPUS / "expected.json").read_text())
ALLOWED = (SyntaxError, OSError, ValueError, EOFError, Image.DecompressionBombError)


def _param(name):
    entry = MANIFEST[name]
    marks = [pytest.mark.xfail(reason=entry["xfail"], strict=True)] if "xfail" in entry else []
    return pytest.param(name, marks=marks, id=name)


def test_manifest_lists_every_file():
    assert sorted(p.name for p in CORPUS.glob("*.ppan")) == sorted(MANIFEST)
    assert len(MANIFEST) >= 25
    assert all(len((CORPUS / name).read_bytes()) <= 512 for name in MANIFEST)  # tiny, bombs too


@pytest.mark.parametrize("name", [_param(n) for n in sorted(MANIFEST)])
def test_corpus_file(name):
    entry, data = MANIFEST[name], (CORPUS / name).read_bytes()
    if entry["at"] == "open":
        with pytest.raises(ALLOWED) as caught:
            Image.open(io.BytesIO(data), formats=["PPAN"])
        assert type(caught.value).__name__ == entry["error"]
        if isinstance(caught.value, Image.DecompressionBombError):
            assert entry["message"] in str(caught.value)
        elif data.startswith(container.SIGNATURE):  # the plugin's own reason
            with pytest.raises(SyntaxError, match=entry["message"]):
                PpanImagePlugin.PpanImageFile(io.BytesIO(data))
        return
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        im = Image.open(io.BytesIO(data), formats=["PPAN"])
    with im, warnings.catch_warnings(record=True) as load_warnings:
        warnings.simplefilter("always")
        if entry["at"] == "load":
            with pytest.raises(ALLOWED) as caught:
                im.load()
            assert type(caught.value).__name__ == entry["error"]
            assert entry["message"] in str(caught.value)
        else:
            im.load()
            assert list(im.size) == entry.get("declares", [8, 6])
            if entry["absent_info"]:
                assert entry["absent_info"] not in im.info
                assert any("skipping PPAN" in str(w.message) for w in caught_warnings + load_warnings)


@pytest.mark.parametrize("name", sorted(n for n in MANIFEST if MANIFEST[n]["at"] == "load"))
def test_corpus_file_fails_the_same_when_fed_to_a_parser(name):
    data = (CORPUS / name).read_bytes()
    parser = ImageFile.Parser()
    with pytest.raises(ALLOWED):
        for i in range(0, len(data), 50):
            parser.feed(data[i : i + 50])
        parser.close()


# --- ImageFile.LOAD_TRUNCATED_IMAGES (spec §11) ---------------------------------------------


@pytest.fixture
def truncated_images_allowed():
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def _cut_points(data):
    """Named offsets to cut a file at, and the complete layers each leaves."""
    starts, pos = {}, 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        starts[data[pos + 4 : pos + 8]] = (pos, pos + 12 + length)
        pos += 12 + length
    head_end = starts[b"HEAD"][1]
    cuts = {
        "in-signature": (5, "unidentified"),
        "in-head": (20, "unidentified"),
        "after-head": (head_end, ()),
        "in-metadata": (starts[b"iccp"][0] + 10, ()),
        "before-background": (starts[BGND][0], ()),
        "in-background": (starts[BGND][0] + 30, ()),
        "after-background": (starts[BGND][1], (BGND,)),
        "in-mask": (starts[MASK][0] + 12, (BGND,)),
        "after-mask": (starts[MASK][1], (BGND, MASK)),
        "in-subject": (starts[SUBJ][1] - 5, (BGND, MASK)),
        "after-subject": (starts[SUBJ][1], (BGND, MASK, SUBJ)),
        "in-done": (starts[SUBJ][1] + 6, (BGND, MASK, SUBJ)),
    }
    return cuts


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_truncated_files(mode, truncated_images_allowed):
    image, mask = synthetic(mode, size=(40, 30))
    data = encode(image, mask=mask, background_scale=4, feather=3, icc_profile=b"icc" * 50)
    header = container.read_head(io.BytesIO(data))
    _, *chunks = _chunks(data)
    layers = dict(chunks)
    for where, (cut, complete) in _cut_points(data).items():
        piece = data[:cut]
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        if complete == "unidentified":
            with pytest.raises(Image.UnidentifiedImageError):
                Image.open(io.BytesIO(piece))
            continue
        with Image.open(io.BytesIO(piece)) as im:
            im.load()
            got = as_array(im)
        expected = codec.decode(header, {k: layers[k] for k in complete})
        if not complete:  # black, transparent for RGBA
            assert not expected.any()
        np.testing.assert_array_equal(got, expected, err_msg=where)
        # without LOAD_TRUNCATED_IMAGES: refused at open before the first layer, else at load
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        if where in ("after-head", "in-metadata", "before-background"):
            with pytest.raises(Image.UnidentifiedImageError):
                Image.open(io.BytesIO(piece))
        else:
            with Image.open(io.BytesIO(piece)) as im, pytest.raises(OSError, match="truncated"):
                im.load()
    np.testing.assert_array_equal(as_array(decode(data)), codec.decode(header, layers))


def test_truncated_file_with_draft(truncated_images_allowed):
    image, mask = synthetic("RGB", size=(40, 32))
    data = encode(image, mask=mask, background_scale=4)
    cut = data.index(b"MASK") + 10
    with Image.open(io.BytesIO(data[:cut])) as im:
        im.draft("RGB", (10, 8))
        im.load()
        assert im.size == (10, 8)
        small = as_array(im)
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (10, 8))
        im.load()
        np.testing.assert_array_equal(small, as_array(im))


@pytest.mark.parametrize("piece", [1, 7, 64])
def test_parser_waits_for_the_metadata(piece):
    """A file cut in its metadata is not opened, so ImageFile.Parser waits for all of it."""
    image, mask = synthetic("RGB", size=(24, 16))
    data = encode(image, mask=mask, icc_profile=b"icc" * 100, xmp="<x/>")
    parser = ImageFile.Parser()
    for i in range(0, len(data), piece):
        parser.feed(data[i : i + piece])
    parsed = parser.close()
    assert parsed.info["icc_profile"] == b"icc" * 100 and parsed.info["xmp"] == b"<x/>"
    np.testing.assert_array_equal(as_array(parsed), as_array(decode(data)))


def test_corrupt_chunk_is_an_error_even_with_truncated_images_allowed(truncated_images_allowed):
    data = (CORPUS / "rle-run-past-row.ppan").read_bytes()
    with Image.open(io.BytesIO(data)) as im, pytest.raises(OSError, match="passes the end"):
        im.load()
    data = (CORPUS / "bad-ancillary-crc.ppan").read_bytes()
    with Image.open(io.BytesIO(data)) as im, pytest.raises(OSError, match="CRC"):
        im.load()


def _chunks(data):
    out, pos = [], 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


# --- limits (spec §10) -----------------------------------------------------------------------


def _run_isolated(code: str, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh interpreter; it prints a JSON object (with its peak RSS)."""
    prelude = textwrap.dedent("""
        import io, json, time
        def reset_peak():  # Linux: VmHWM restarts from the current RSS
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        def peak_mb():
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    """)
    result = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=120, env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_huge_declared_size_allocates_nothing_before_the_layers_are_checked():
    """65535 x 65535 passes when the user lifts MAX_IMAGE_PIXELS; a lying BGND must still fail
    at once, without touching memory for the declared size."""
    out = _run_isolated("""
        from PIL import Image
        import peterpan_format
        from peterpan_format import container as C
        from peterpan_format.codec import decode
        im = Image.open(io.BytesIO(open(%r, "rb").read()))  # warm up: Numba kernels loaded
        im.load()
        reset_peak()
        base = peak_mb()
        Image.MAX_IMAGE_PIXELS = None
        header = C.Header(65535, 65535, "RGBA", 1, 32)
        payload = b"\\x01" + (65535).to_bytes(4, "big") * 2 + b"RIFF" + b"\\0" * 40
        data = (C.SIGNATURE + C.pack_chunk(C.HEAD, header.pack()) + C.pack_chunk(C.BGND, payload)
                + C.pack_chunk(C.MASK, b"\\x01") + C.pack_chunk(C.SUBJ, b"") + C.pack_chunk(C.DONE, b""))
        t = time.perf_counter()
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
            error = None
        except OSError as exc:
            error = str(exc)
        print(json.dumps({"error": error, "seconds": time.perf_counter() - t, "grew_mb": peak_mb() - base}))
    """ % str(CORPUS / "valid.ppan"))
    assert "canvas" in out["error"]
    assert out["seconds"] < 2 and out["grew_mb"] < 64


def test_tiny_file_declaring_a_huge_mask_decompresses_only_up_to_the_limit():
    """A 4000 x 4000 header (passes MAX_IMAGE_PIXELS) with a MASK that would decompress to
    1 GiB: decompression stops at H x (W + 1) bytes."""
    out = _run_isolated("""
        import brotli, numpy as np
        from PIL import Image
        import peterpan_format
        from peterpan_format import container as C
        from peterpan_format.codec import encode_background
        header = C.Header(4000, 4000, "L", 8, 0)
        background = encode_background(np.zeros((4000, 4000, 1), np.uint8)[:8, :8].repeat(500, 0).repeat(500, 1),
                                       np.zeros((4000, 4000), np.uint8), header, 10)
        compressor, zeros = brotli.Compressor(quality=5), bytes(1 << 20)
        bomb = b"".join(compressor.process(zeros) for _ in range(1024)) + compressor.finish()  # 1 GiB
        data = (C.SIGNATURE + C.pack_chunk(C.HEAD, header.pack()) + C.pack_chunk(C.BGND, background)
                + C.pack_chunk(C.MASK, b"\\x01" + bomb) + C.pack_chunk(C.SUBJ, b"") + C.pack_chunk(C.DONE, b""))
        reset_peak()
        base = peak_mb()
        t = time.perf_counter()
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
            error = None
        except OSError as exc:
            error = str(exc)
        print(json.dumps({"error": error, "size": len(data), "seconds": time.perf_counter() - t,
                          "grew_mb": peak_mb() - base}))
    """)
    assert out["size"] < 4096
    assert out["error"] == f"PPAN MASK runs decompress to more than {4000 * 4001} bytes"
    # the declared image is 16 MB: Pillow's image, the upsampled background and the runs
    # capped at 16 MB; not the 1 GiB the stream holds
    assert out["grew_mb"] < 160 and out["seconds"] < 10


BOMBS = sorted(name for name in MANIFEST if "declares" in MANIFEST[name])


def test_bombs_decode_within_four_images_and_three_mp_per_second():
    """Issue 14: whatever the layers hold, decoding takes at most the memory the process had
    before + 4 x the image (W x H x channels bytes) and 2 s + pixels / (3 MP/s) of CPU.
    Each file is decoded once first (kernels loaded), then measured; a fixed mmap
    threshold keeps glibc from holding freed buffers, which would hide growth."""
    assert len(BOMBS) >= 6
    out = _run_isolated("""
        from PIL import Image
        import peterpan_format
        results = {}
        def decode(path):
            try:
                with Image.open(path) as im:
                    im.load()
                    return im.width * im.height * len(im.getbands()), None
            except OSError as exc:
                return None, str(exc)
        for path in %r:
            decode(path)
            reset_peak()
            base = peak_mb()
            cpu = time.process_time()
            size, error = decode(path)
            results[path] = {"grew_mb": peak_mb() - base, "cpu": time.process_time() - cpu, "error": error}
        print(json.dumps(results))
    """ % [str(CORPUS / name) for name in BOMBS], env={"MALLOC_MMAP_THRESHOLD_": "131072"})
    for name in BOMBS:
        got, entry = out[str(CORPUS / name)], MANIFEST[name]
        width, height = entry["declares"]
        image_mb = width * height * (4 if "rgba" in name else 3) / 2**20
        assert (got["error"] is None) == (entry["at"] == "none"), (name, got["error"])
        assert got["grew_mb"] <= 4 * image_mb, (name, got["grew_mb"], image_mb)
        assert got["cpu"] <= 2 + width * height / 3e6, (name, got["cpu"])


def test_brotli_output_is_capped_while_streaming(monkeypatch):
    import brotli

    from peterpan_format import streams

    produced = []
    real = brotli.Decompressor

    class Counting:
        def __init__(self):
            self._d = real()

        def process(self, data, output_buffer_limit=None):
            out = self._d.process(data, output_buffer_limit=output_buffer_limit)
            produced.append(len(out))
            return out

        def __getattr__(self, name):
            return getattr(self._d, name)

    monkeypatch.setattr(streams.brotli, "Decompressor", Counting)
    bomb = brotli.compress(b"\0" * (64 << 20), quality=5)
    for limit in (1000, 1 << 20, 10 << 20):
        produced.clear()
        with pytest.raises(OSError, match=f"more than {limit} bytes"):
            streams.brotli_decompress(bomb, limit, "test")
        assert limit < sum(produced) <= limit + (32 << 10)
    produced.clear()
    assert len(streams.brotli_decompress(bomb, 64 << 20, "test")) == 64 << 20


def test_metadata_is_capped_at_16_mib():
    from peterpan_format import metadata

    assert metadata.MAX_VALUE == 16 << 20
    with pytest.raises(ValueError, match="at most"):
        metadata.pack({"icc_profile": b"\0" * ((16 << 20) + 1)})


# --- writing is safe -------------------------------------------------------------------------


def test_failed_save_mid_encode_leaves_no_file(tmp_path, monkeypatch):
    image, mask = synthetic("RGB")
    old = tmp_path / "old.ppan"
    old.write_bytes(b"previous contents")
    calls = []

    def fail(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(codec, "encode_mask_layer", fail)  # after the background is encoded
    for path in (tmp_path / "new.ppan", old):
        with pytest.raises(RuntimeError, match="disk on fire"):
            peterpan_format.save(image, path, mask=mask)
    assert calls == [1, 1]
    assert old.read_bytes() == b"previous contents"
    assert sorted(os.listdir(tmp_path)) == ["old.ppan"]  # no temporary file left either
    with pytest.raises(RuntimeError):  # Pillow's own save removes a file it created
        image.save(tmp_path / "pillow.ppan", mask=mask)
    assert sorted(os.listdir(tmp_path)) == ["old.ppan"]


def test_interrupted_save_leaves_no_file(tmp_path, monkeypatch):
    image, mask = synthetic("L")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(codec, "pack_file", interrupt)
    with pytest.raises(KeyboardInterrupt):
        peterpan_format.save(image, tmp_path / "x.ppan", mask=mask)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("size, scale", [((16384 * 2 + 1, 2), 2), ((3, 16384 + 1), 1)])
def test_save_refuses_a_background_wider_than_webp_allows(tmp_path, size, scale):
    image = Image.new("L", size)
    path = tmp_path / "wide.ppan"
    with pytest.raises(ValueError, match="background_scale"):
        peterpan_format.save(image, path, mask=np.zeros(size[::-1], bool), background_scale=scale,
                              no_subject="background")
    assert os.listdir(tmp_path) == []


def test_save_refuses_webp_subject_coding_for_a_box_wider_than_webp_allows(tmp_path):
    image = Image.new("L", (16385, 2))
    with pytest.raises(ValueError, match="subject_coding='webp'"):
        peterpan_format.save(image, tmp_path / "x.ppan", mask=np.ones((2, 16385), bool),
                             background_scale=2, subject_coding="webp")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("params", [{"background_scale": 9}, {"feather": 33}, {"background_scale": 0},
                                    {"subject_coding": "jpeg"}, {"background_quality": 101}])
def test_save_refuses_options_outside_the_format(tmp_path, params):
    image, mask = synthetic("RGB", size=(8, 8))
    with pytest.raises(ValueError):
        peterpan_format.save(image, tmp_path / "x.ppan", mask=mask[:8, :8], **params)
    assert os.listdir(tmp_path) == []


def test_save_refuses_sizes_outside_the_format(tmp_path):
    image = Image.new("L", (65536, 1))
    with pytest.raises((ValueError, OSError)):
        peterpan_format.save(image, tmp_path / "x.ppan", mask=np.zeros((1, 65536), bool), background_scale=8,
                              no_subject="background")
    assert os.listdir(tmp_path) == []
