"""MASK coding 2 (spec §5.2): the context-modelled mask, against the spec reader and coding 1."""

import brotli
import numpy as np
import pytest

from conftest import as_array, decode, encode, photo, synthetic
from peterpan_format import codec
from peterpan_format._kernels.mask_coder import decode_mask_box, encode_mask_box
from peterpan_format._kernels.rle import encode_mask
from peterpan_format.container import Header
from spec_reader import SpecError, _decode_mask
from test_conformance import chunk_body, replace_chunk


def masks():
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:37, 0:53]
    yield "ellipse", ((x - 25) / 18.0) ** 2 + ((y - 17) / 12.0) ** 2 <= 1
    yield "noise", rng.random((23, 31)) < 0.5
    yield "one-pixel", np.pad(np.ones((1, 1), bool), ((3, 4), (5, 2)))
    yield "full", np.ones((9, 14), bool)
    yield "row", np.pad(np.ones((1, 40), bool), ((2, 0), (0, 0)))
    yield "column", np.pad(np.ones((30, 1), bool), ((0, 0), (7, 3)))
    yield "stripes", (np.mgrid[0:16, 0:16][0] % 3 == 0) | (np.mgrid[0:16, 0:16][1] == 0)
    yield "empty", np.zeros((8, 6), bool)


@pytest.mark.parametrize("name, mask", list(masks()), ids=[n for n, _ in masks()])
def test_round_trip_through_the_codec_and_the_spec_reader(name, mask):
    header = Header(mask.shape[1], mask.shape[0], "RGB", 2, 1)
    payload = codec.encode_mask_layer(mask.astype(np.uint8))
    assert payload[0] == 2
    np.testing.assert_array_equal(codec.decode_mask_layer(payload, header), mask)
    hd = {"width": header.width, "height": header.height}
    np.testing.assert_array_equal(_decode_mask(payload, hd), mask)


def test_old_coding_1_still_decodes():
    _, mask = synthetic("RGB")
    header = Header(mask.shape[1], mask.shape[0], "RGB", 2, 1)
    old = b"\x01" + brotli.compress(encode_mask(mask.astype(np.uint8)).tobytes())
    np.testing.assert_array_equal(codec.decode_mask_layer(old, header), mask)
    image, _ = synthetic("RGB")
    data = encode(image, mask=mask)
    decoded = decode(replace_chunk(data, b"MASK", old))
    np.testing.assert_array_equal(as_array(decoded), as_array(decode(data)))


def test_rejections_agree_with_the_spec_reader():
    image, mask = synthetic("RGB", size=(30, 20))
    data = encode(image, mask=mask)
    good = chunk_body(data, b"MASK")
    h = mask.shape[0]
    box = good[:9]
    for bad in (
        good[:8],  # shorter than 9 bytes
        good[:-1],  # the stream ends early
        good + b"\x00",  # a byte left over
        b"\x02" + (25).to_bytes(2, "big") + box[3:] + good[9:],  # the rectangle passes the edge
        b"\x02" + box[1:7] + (h).to_bytes(2, "big") + good[9:],  # taller than its pixels
        b"\x02" + bytes(8) + b"\x00",  # empty, with a stream
        b"\x02" + (1).to_bytes(2, "big") + bytes(6),  # empty, not at the origin
    ):
        broken = replace_chunk(data, b"MASK", bad)
        with pytest.raises(OSError):
            decode(broken)
        with pytest.raises(SpecError):
            _decode_mask(bad, {"width": 30, "height": 20})


def test_box_kernel_refuses_garbage_without_reading_past_it():
    box, status = decode_mask_box(b"\xff" * 3, 40, 30)
    assert status != 0
    box, status = decode_mask_box(encode_mask_box(np.ones((5, 5), np.uint8)) + b"\x00\x00", 5, 5)
    assert status != 0


@pytest.mark.parametrize("photo_id", ["ccp_0741", "hsd-232", "cat_group0421_jpeg", "camvid_0016E5_05460"])
def test_smaller_than_coding_1_on_photo_masks(photo_id):
    _, mask = photo(photo_id)
    old = 1 + len(brotli.compress(encode_mask(mask.astype(np.uint8)).tobytes(), quality=11))
    assert len(codec.encode_mask_layer(mask.astype(np.uint8))) < 0.65 * old



def test_context_tables_follow_the_template():
    """The kernel builds each pixel's context from three tables as the template slides:
    rows y - 2 and y - 1 through ABOVE2 / ABOVE1, row y's four pixels as the low bits.
    Every table entry must set exactly the template bits of the pixels it stands for."""
    from peterpan_format._kernels import mask_coder as mc

    t = mc.TEMPLATE
    bit = {(int(dx), int(dy)): 1 << (len(t) - 1 - i) for i, (dx, dy) in enumerate(t)}
    for table, dy, first, count in ((mc.ABOVE2, -2, -2, 5), (mc.ABOVE1, -1, -3, 7), (np.arange(16), 0, -4, 4)):
        for v in range(1 << count):
            want = sum(bit[(first + j, dy)] for j in range(count) if v >> (count - 1 - j) & 1)
            assert table[v] == want, (dy, v)
    assert len(bit) == 16 and all(dy in (-2, -1, 0) for _, dy in bit)
