"""Harness (c2): codec.decode_background on an arbitrary BGND payload.

The first byte picks a fixed valid header (ppan_fuzz.LAYER_FIXTURES, low 7 bits); the rest
is the payload.
Run: ``python fuzz/fuzz_background.py fuzz/corpus/background fuzz/seeds/background -max_total_time=60``
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ppan_fuzz  # noqa: E402

ppan_fuzz.setup(instrument=__name__ == "__main__")

import numpy as np  # noqa: E402

from peterpan_format import codec  # noqa: E402


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    header, _ = ppan_fuzz.fixture(data[0] & 0x7F)
    with ppan_fuzz.guarded("background"):
        try:
            background = codec.decode_background(data[1:], header)
        except OSError as exc:
            ppan_fuzz.signal_error(exc)
            raise
        ppan_fuzz.signal_error(None)
        bw, bh = header.background_size
        assert background.shape == (bh, bw, header.channels) and background.dtype == np.uint8


if __name__ == "__main__":
    ppan_fuzz.main(TestOneInput)
