"""Harness (c4): metadata.unpack on an arbitrary metadata chunk payload.

The first byte picks the chunk type (exif, iccp, xmpd, clas, nsub); the rest is the payload
or, if the byte's high bit is set, a value stored Brotli-compressed, which must come back
intact. A malformed chunk (spec §9: an exif value not starting II*\0/MM\0*, an xmpd value
not in UTF-8, …) is skipped (with a warning), never raised.
Run: ``python fuzz/fuzz_metadata.py fuzz/corpus/metadata fuzz/seeds/metadata -max_total_time=60``
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ppan_fuzz  # noqa: E402

ppan_fuzz.setup(instrument=__name__ == "__main__")

import brotli  # noqa: E402

from peterpan_format import metadata  # noqa: E402
from peterpan_format.container import METADATA_TYPES  # noqa: E402


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    chunk_type = METADATA_TYPES[(data[0] & 0x7F) % len(METADATA_TYPES)]
    payload = b"\x01" + brotli.compress(data[1:], quality=0) if data[0] & 0x80 else data[1:]
    with ppan_fuzz.guarded("metadata"):
        info = metadata.unpack({chunk_type: payload})
        assert len(info) <= 1
        for key, value in info.items():
            if key == "subject_classes":  # {name: pixels}, which packs back to the value
                assert isinstance(value, dict) and 0 < len(value) <= metadata.MAX_CLASSES
                assert all(isinstance(n, str) and isinstance(p, int) for n, p in value.items())
                if data[0] & 0x80:
                    assert metadata.pack_classes(value) == data[1:]
                continue
            if key == "no_subject":
                assert value in metadata.NO_SUBJECT_VALUES
                continue
            assert isinstance(value, bytes)
            prefix = metadata.EXIF_PREFIX if key == "exif" else b""
            assert value.startswith(prefix) and len(value) <= metadata.MAX_VALUE + len(prefix)
            if key == "exif":
                assert value[len(prefix) : len(prefix) + 4] in metadata.TIFF_HEADERS
            if key == "xmp":
                value.decode("utf-8")
            if data[0] & 0x80:
                assert value == prefix + data[1:]


if __name__ == "__main__":
    ppan_fuzz.main(TestOneInput)
