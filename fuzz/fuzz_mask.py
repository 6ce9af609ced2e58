"""Harness (c1): codec.decode_mask_layer on an arbitrary MASK payload.

The first byte picks a fixed valid header (ppan_fuzz.LAYER_FIXTURES, low 7 bits); the rest
is the payload, or, if the byte's high bit is set, the raw ``runs`` stream of coding 1 that
is Brotli-compressed into a payload (so that mutations reach the run-length kernel instead
of breaking the Brotli stream). A coding-1 mask must re-encode to exactly the decompressed
runs (the coding is canonical); a coding-2 mask must come back from the encoder's own
payload for it (the arithmetic-coded stream is not canonical: its last bytes have slack).
Run: ``python fuzz/fuzz_mask.py fuzz/corpus/mask fuzz/seeds/mask -max_total_time=60``
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ppan_fuzz  # noqa: E402

ppan_fuzz.setup(instrument=__name__ == "__main__")

import brotli  # noqa: E402
import numpy as np  # noqa: E402

from peterpan_format import codec  # noqa: E402
from peterpan_format._kernels.rle import encode_mask  # noqa: E402


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    header, _ = ppan_fuzz.fixture(data[0] & 0x7F)
    payload = b"\x01" + brotli.compress(data[1:], quality=0) if data[0] & 0x80 else data[1:]
    with ppan_fuzz.guarded("mask"):
        try:
            mask = codec.decode_mask_layer(payload, header)
        except OSError as exc:
            ppan_fuzz.signal_error(exc)
            raise
        assert mask.shape == (header.height, header.width) and mask.dtype == np.uint8
        assert mask.max(initial=0) <= 1
        if payload[0] == 1:
            runs = encode_mask(mask).tobytes()
            assert runs == brotli.decompress(payload[1:])
        else:
            assert np.array_equal(codec.decode_mask_layer(codec.encode_mask_layer(mask), header), mask)
        ppan_fuzz.signal_error(None)
        ppan_fuzz.signal_size(len(payload))
        ppan_fuzz.signal_size(int(np.count_nonzero(mask)))


if __name__ == "__main__":
    ppan_fuzz.main(TestOneInput)
