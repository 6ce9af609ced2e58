"""SUBJ coding 4 (§6.4): files from the project's `from_jpeg`, decoded by the spec reader.

The project's encoder is a black box here: JPEG files made by Pillow go in, the .ppan
comes out and is decoded by tests/spec_reader.py (written from spec/FORMAT.md alone).
At every subject pixel the result must be exactly Pillow's decoding of the JPEG, and
everywhere it must equal the plugin's decoding of the .ppan.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import peterpan_format
from peterpan_format.jpeg import encode_jpeg_subject
from peterpan_format.jpeg import payload as jpeg_payload
from conftest import as_array, decode, photo
from spec_reader import SpecError, read_ppan

SIGNATURE = b"\x89PAN\r\n\x1a\n"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def ppan_chunks(data: bytes):
    """The chunks of a .ppan (§2, §2.1): [(type, offset of the chunk, body)], up to DONE."""
    assert data[:8] == SIGNATURE
    pos, out = 8, []
    while True:
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8].decode("ascii")
        body = data[pos + 8 : pos + 8 + length]
        out.append((ctype, pos, body))
        pos += 12 + length
        if ctype == "DONE":
            return out


def subj_body(data: bytes) -> bytes:
    (body,) = [b for t, _, b in ppan_chunks(data) if t == "SUBJ"]
    return body


def replace_subj_payload(data: bytes, payload: bytes, coding: int = 4) -> bytes:
    """The same file with the SUBJ coding and payload replaced (the box, §6, is kept)."""
    (pos, body) = [(p, b) for t, p, b in ppan_chunks(data) if t == "SUBJ"][0]
    new = bytes([coding]) + body[1:17] + payload
    chunk = struct.pack(">I", len(new)) + b"SUBJ" + new + struct.pack(">I", zlib.crc32(b"SUBJ" + new))
    return data[:pos] + chunk + data[pos + 12 + len(body) :]


def make_jpeg(mode, size, quality=75, subsampling=2, progressive=False, restart=None, seed=0) -> bytes:
    """A Pillow JPEG of smooth content with edges and noise (so every coefficient band is used)."""
    W, H = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    planes = []
    for c in range(3):
        f = 128 + 70 * np.sin(xx / (4.0 + c) + seed) * np.cos(yy / (5.0 - c) + 2 * c)
        f += 60 * ((xx + 2 * yy + 7 * c) % 23 < 9)  # hard edges
        f += rng.normal(0, 12, (H, W))
        planes.append(f)
    rgb = np.clip(np.stack(planes, axis=2), 0, 255).astype(np.uint8)
    im = Image.fromarray(rgb, "RGB")
    if mode == "L":
        im = im.convert("L")
    params = dict(quality=quality, progressive=progressive)
    if mode == "RGB":
        params["subsampling"] = subsampling
    if restart:
        params["restart_marker_blocks"] = restart  # Pillow >= 11: DRI + RSTn markers
    buf = io.BytesIO()
    im.save(buf, "JPEG", **params)
    data = buf.getvalue()
    if restart:
        assert b"\xff\xdd" in data  # a DRI segment
    return data


def make_masks(W, H):
    yy, xx = np.mgrid[0:H, 0:W]
    blob = ((xx - W * 0.5) / (W * 0.28)) ** 2 + ((yy - H * 0.5) / (H * 0.3)) ** 2 <= 1
    edges = (xx < 3) | (yy >= H - 2) | (((xx - W) / 9.0) ** 2 + (yy / 7.0) ** 2 <= 1)  # left, bottom, top-right
    edges[H // 2 - 2 : H // 2 + 3, W - 1] = True  # a sliver on the right edge
    pixel = np.zeros((H, W), bool)
    pixel[H - 3, W - 2] = True
    whole = np.ones((H, W), bool)
    return {"blob": blob, "edges": edges, "pixel": pixel, "whole": whole}


def jpeg_pixels(jpeg: bytes, mode: str) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg)) as im:
        return as_array(im.convert(mode))


def _forced_payload(jpeg, mask, coder="auto"):
    """The reference encoder's coding-4 payload (§6.4.7), with a chosen coder. The encoder
    verifies its own payload against Pillow: a ValueError from that is a failure here."""
    return encode_jpeg_subject(jpeg, mask, coder=coder)


def check(jpeg: bytes, mode: str, mask: np.ndarray, data: bytes | None = None, **options) -> int:
    """from_jpeg -> .ppan; spec reader = Pillow at the subject, = plugin everywhere.

    The encoder keeps coding 4 only where it is smaller than its pixel coding (a single
    subject pixel costs a few bytes as pixels, a few blocks as coefficients).  So when
    the file has another coding, the same check is also run on the file with the
    encoder's coding-4 payload put in its place.  Returns the coding from_jpeg chose.
    """
    if data is None:
        data = peterpan_format.from_jpeg(jpeg, mask=mask, **options)
    coding = subj_body(data)[0]
    _check_file(jpeg, mode, mask, data)
    if coding != 4:
        _check_file(jpeg, mode, mask, replace_subj_payload(data, _forced_payload(jpeg, mask)))
    return coding


def _check_file(jpeg: bytes, mode: str, mask: np.ndarray, data: bytes):
    spec = read_ppan(data)
    H, W = mask.shape
    assert (spec.mode, spec.width, spec.height) == (mode, W, H)
    np.testing.assert_array_equal(spec.mask, mask)
    np.testing.assert_array_equal(spec.pixels[mask], jpeg_pixels(jpeg, mode)[mask])
    np.testing.assert_array_equal(spec.pixels, as_array(decode(data)))
    return data


# ---------------------------------------------------------------------------
# Pillow JPEGs: modes, sizes, qualities, subsampling, progressive, restarts, masks
# ---------------------------------------------------------------------------

CASES = [
    # mode, size, quality, subsampling (0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0), progressive, restart
    ("RGB", (37, 29), 75, 2, False, None),
    ("RGB", (37, 29), 50, 0, False, None),
    ("RGB", (50, 41), 95, 1, False, None),
    ("RGB", (64, 48), 75, 2, True, None),
    ("RGB", (50, 41), 50, 1, True, None),
    ("RGB", (37, 29), 95, 0, True, None),
    ("RGB", (64, 48), 90, 2, False, 3),
    ("RGB", (50, 41), 75, 0, True, 2),
    ("L", (37, 29), 75, None, False, None),
    ("L", (50, 41), 95, None, True, None),
    ("L", (64, 48), 50, None, False, 2),
]


@pytest.mark.parametrize("mode, size, quality, subsampling, progressive, restart", CASES)
def test_pillow_jpegs(mode, size, quality, subsampling, progressive, restart):
    seed = size[0] + quality
    jpeg = make_jpeg(mode, size, quality, subsampling, progressive, restart, seed=seed)
    codings = {}
    for name, mask in make_masks(*size).items():
        try:
            codings[name] = check(jpeg, mode, mask)
        except AssertionError as e:
            raise AssertionError(f"mask {name!r}: {e}") from None
    # the JPEG is supported: from_jpeg writes coding 4 at least for the larger subjects
    assert 4 in (codings["blob"], codings["whole"]), codings


def random_mask(W, H, seed):
    """A few random ellipses with holes and stray pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    m = np.zeros((H, W), bool)
    for _ in range(3):
        cx, cy, rx, ry = rng.random() * W, rng.random() * H, 3 + rng.random() * W / 3, 3 + rng.random() * H / 3
        m |= ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
    m &= rng.random((H, W)) > 0.05
    m[rng.integers(0, H, 5), rng.integers(0, W, 5)] = True
    return m


@pytest.mark.parametrize(
    "mode, size, quality, subsampling, progressive, keep_rgb",
    [
        ("RGB", (96, 80), 90, 2, True, False),
        ("RGB", (83, 61), 85, 1, False, False),
        ("RGB", (45, 37), 80, 0, False, True),  # Adobe APP14 transform 0: R, G, B components
        ("L", (81, 67), 85, None, True, False),
    ],
)
def test_random_masks(mode, size, quality, subsampling, progressive, keep_rgb):
    jpeg = make_jpeg(mode, size, quality, subsampling, progressive, seed=size[1])
    if keep_rgb:
        with Image.open(io.BytesIO(jpeg)) as im:
            buf = io.BytesIO()
            im.convert("RGB").save(buf, "JPEG", quality=quality, keep_rgb=True)
        jpeg = buf.getvalue()
        assert b"Adobe" in jpeg
    codings = [check(jpeg, mode, random_mask(*size, seed=k)) for k in range(3)]
    assert 4 in codings


def test_other_samplings_through_the_encoder():
    # JPEGs Pillow cannot write (4:4:0, 4:1:1, mixed ratios, R/G/B component ids), made by
    # the baseline writer of the self-checks, through from_jpeg.
    from test_spec_reader_selfcheck import JPEG_LAYOUTS, K1, K2, ijg, jpeg_case, write_baseline_jpeg

    for layout, (W, H), ids in [
        ("4:4:0", (26, 35), (1, 2, 3)),
        ("4:1:1", (45, 19), (1, 2, 3)),
        ("mixed", (27, 23), (1, 2, 3)),
        ("4x1+2x1", (46, 17), (1, 2, 3)),
        ("4:2:0", (6, 5), (1, 2, 3)),
        ("4:4:4", (21, 13), (82, 71, 66)),
    ]:
        comps = JPEG_LAYOUTS[layout]
        qtables = [ijg(K1, 70), ijg(K2, 70)]
        grids = jpeg_case(W, H, comps, qtables, seed=W + H, noise=1)
        jpeg = write_baseline_jpeg(W, H, comps, qtables, grids, ids=ids)
        for mask in (random_mask(W, H, seed=1), np.ones((H, W), bool)):
            try:
                check(jpeg, "RGB", mask)
            except AssertionError as e:
                raise AssertionError(f"{layout} {W}x{H}: {e}") from None


def test_sources_and_mask_types(tmp_path):
    jpeg = make_jpeg("RGB", (45, 30), 80, 2, seed=3)
    mask = make_masks(45, 30)["blob"]
    path = tmp_path / "in.jpg"
    path.write_bytes(jpeg)
    pil_mask = Image.fromarray(mask.astype(np.uint8) * 255, "L")  # mode L: nonzero = subject
    outs = [
        peterpan_format.from_jpeg(jpeg, mask=mask),
        peterpan_format.from_jpeg(str(path), mask=mask),
        peterpan_format.from_jpeg(path, mask=mask),
        peterpan_format.from_jpeg(io.BytesIO(jpeg), mask=mask),
        peterpan_format.from_jpeg(jpeg, mask=pil_mask),
    ]
    assert all(subj_body(o) == subj_body(outs[0]) for o in outs)
    assert check(jpeg, "RGB", mask, data=outs[0]) == 4


def test_with_background_options():
    jpeg = make_jpeg("RGB", (53, 38), 85, 2, seed=5)
    mask = make_masks(53, 38)["edges"]
    data = peterpan_format.from_jpeg(jpeg, mask=mask, background_scale=4, feather=3)
    spec = read_ppan(data)
    assert (spec.scale, spec.feather) == (4, 3)
    check(jpeg, "RGB", mask, data=data)


def test_real_photo_crop():
    image, mask = photo("hsd-232")  # skips without the shared data
    box = (100, 160, 196, 232)  # 96 x 72 across the subject's border
    crop = image.crop(box)
    cmask = mask[box[1] : box[3], box[0] : box[2]]
    assert 0.1 < cmask.mean() < 0.9
    buf = io.BytesIO()
    crop.save(buf, "JPEG", quality=90, subsampling=2)
    check(buf.getvalue(), "RGB", cmask)


# ---------------------------------------------------------------------------
# Every coder (§6.4.4, §6.4.5, §6.4.5.6), if the reference encoder lets us choose
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("coder, byte", [("brotli", 1), ("arith", 2), ("segments", 3)])
@pytest.mark.parametrize(
    "mode, size, quality, subsampling, progressive",
    [("RGB", (50, 41), 75, 2, False), ("RGB", (37, 29), 95, 1, True), ("L", (64, 48), 50, None, False)],
)
def test_every_coder(coder, byte, mode, size, quality, subsampling, progressive, monkeypatch):
    """Coders 1 - 3; "segments" makes the encoder split even these small subjects (coder 3,
    §6.4.5.6: as many segments as MCU rows allow, at most 16; a subject within one MCU row
    stays coder 2)."""
    if coder == "segments":
        monkeypatch.setattr(jpeg_payload, "SEGMENT_BLOCKS", 1)
        coder = "arith"
    jpeg = make_jpeg(mode, size, quality, subsampling, progressive, seed=11)
    written = set()
    for name, mask in make_masks(*size).items():
        if name == "whole" and mode == "L":
            continue
        base = peterpan_format.from_jpeg(jpeg, mask=mask)
        payload = _forced_payload(jpeg, mask, coder)
        written.add(payload[0])
        _check_file(jpeg, mode, mask, replace_subj_payload(base, payload))
    assert byte in written and written <= {byte, 2}


# ---------------------------------------------------------------------------
# The project's corpus of broken coding-4 files: the spec reader rejects each one too
# ---------------------------------------------------------------------------

CORPUS = Path(__file__).resolve().parent / "corpus"


def _corpus_jpeg_errors():
    expected = CORPUS / "expected.json"
    if not expected.exists():
        return []
    table = json.loads(expected.read_text())
    return sorted(n for n, e in table.items() if n.startswith("subject-jpeg") and e.get("error"))


@pytest.mark.parametrize("name", _corpus_jpeg_errors())
def test_corpus_coding4_files_rejected(name):
    with pytest.raises(SpecError):
        read_ppan((CORPUS / name).read_bytes())
