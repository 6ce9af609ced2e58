"""Harness (c3): subject.decode on an arbitrary SUBJ payload.

The first byte picks a fixed valid header and mask (ppan_fuzz.LAYER_FIXTURES, low 7 bits);
the rest is the payload, or, if the byte's high bit is set, raw MED residuals that become a
coding 2 payload with the mask's box (so that mutations reach the MED kernel). Decoded MED
values must re-encode to exactly the decompressed residuals.
Run: ``python fuzz/fuzz_subject.py fuzz/corpus/subject fuzz/seeds/subject -max_total_time=60``
"""

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ppan_fuzz  # noqa: E402

ppan_fuzz.setup(instrument=__name__ == "__main__")

import brotli  # noqa: E402
import numpy as np  # noqa: E402

from peterpan_format import subject  # noqa: E402
from peterpan_format._kernels.predict import med_encode  # noqa: E402


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    header, mask = ppan_fuzz.fixture(data[0] & 0x7F)
    if data[0] & 0x80:
        prefix = struct.pack(">BIIII", subject.MED, *subject.box_of(mask))
        payload = prefix + brotli.compress(data[1:], quality=0)
    else:
        payload = data[1:]
    with ppan_fuzz.guarded("subject"):
        try:
            box, values = subject.decode(payload, mask, header.channels)
        except OSError as exc:
            ppan_fuzz.signal_error(exc)
            raise
        ppan_fuzz.signal_error(None)
        assert box == subject.box_of(mask)
        if values is None:
            assert box == (0, 0, 0, 0)
            return
        x0, y0, w, h = box
        assert values.shape == (h, w, header.channels) and values.dtype == np.uint8
        if payload[0] == subject.MED:
            crop = np.ascontiguousarray(mask[y0 : y0 + h, x0 : x0 + w])
            assert med_encode(values, crop).tobytes() == brotli.decompress(payload[17:])


if __name__ == "__main__":
    ppan_fuzz.main(TestOneInput)
