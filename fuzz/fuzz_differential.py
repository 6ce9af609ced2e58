"""Harness (e): the plugin against the independent spec reader (tests/spec_reader.py).

For small images (the spec reader is plain Python), the plugin must accept exactly the
files the spec reader accepts and give the same pixels. Uses the structure-aware mutator.
Run: ``python fuzz/fuzz_differential.py fuzz/corpus/differential fuzz/seeds/files -max_total_time=60``
"""

import io
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ppan_fuzz  # noqa: E402

ppan_fuzz.setup(instrument=__name__ == "__main__")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(ppan_fuzz.FUZZ_DIR.parent / "tests"))
from spec_reader import read_ppan  # noqa: E402

MAX_PIXELS = 1500  # the spec reader takes about 10 us per pixel


# Where the spec reader is more lenient than FORMAT.md (its checks of the embedded WebP
# are partial): the plugin's rejection is right, so these are not disagreements.
# - §4 "simple or extended format": a simple-format WebP is one VP8 chunk (RFC 9649); the
#   spec reader checks this for SUBJ only.
# - §4 "one frame, no animation": the spec reader relies on Pillow's is_animated, which is
#   False for an animated WebP of one frame.
SPEC_READER_GAPS = ("simple-format WebP is not exactly one VP8 chunk", "animated WebP")
# Codings the spec reader does not implement yet: files using them are not compared.
SPEC_READER_UNKNOWN = ("unknown SUBJ coding 3",)


class Disagreement(AssertionError):
    """The plugin and the spec reader disagree on a file."""


def _small(data: bytes) -> bool:
    if len(data) < 30 or data[12:16] != b"HEAD":
        return True  # rejected early by both
    width, height = struct.unpack(">II", data[18:26])
    return width * height <= MAX_PIXELS


def TestOneInput(data: bytes) -> None:
    if not _small(data):
        return
    try:
        spec, spec_error = read_ppan(data), None
    except Exception as exc:  # noqa: BLE001  (SpecError, or the spec reader's own trouble)
        spec, spec_error = None, exc
    try:
        with Image.open(io.BytesIO(data), formats=["PPAN"]) as im:
            im.load()
            ours, our_error = np.asarray(im).reshape(im.height, im.width, -1), None
    except ppan_fuzz.allowed() as exc:
        ours, our_error = None, exc
    if spec_error is None and our_error is None:
        if not np.array_equal(spec.pixels, ours):
            raise Disagreement("the plugin and the spec reader decode different pixels")
    elif spec_error is None:
        if any(gap in str(our_error) for gap in SPEC_READER_GAPS):
            return
        raise Disagreement(f"the plugin rejects a file the spec reader accepts: {our_error!r}")
    elif our_error is None:
        if any(unknown in str(spec_error) for unknown in SPEC_READER_UNKNOWN):
            return
        raise Disagreement(f"the plugin accepts a file the spec reader rejects: {spec_error!r}")


if __name__ == "__main__":
    ppan_fuzz.main(TestOneInput, structured=True, seeds_name="files")
