"""Harness (a): ``Image.open(...).load()`` on arbitrary bytes.

Also, chosen by the input's length: ``verify()``, ``draft()`` then load, load with
``ImageFile.LOAD_TRUNCATED_IMAGES``, and feeding ``ImageFile.Parser`` in pieces. A file that
loads must pass ``verify()``, and the Parser must give the same pixels as ``load()``.
Run: ``python fuzz/fuzz_open.py fuzz/corpus/open fuzz/seeds/files tests/corpus -max_total_time=60``
"""

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ppan_fuzz  # noqa: E402

ppan_fuzz.setup(instrument=__name__ == "__main__")

from PIL import Image, ImageFile  # noqa: E402

from peterpan_format.container import CHANNELS  # noqa: E402


def _check_loaded(im, size, mode):
    assert im.size == size and im.mode == mode, (im.size, size, im.mode, mode)
    assert len(im.tobytes()) == size[0] * size[1] * CHANNELS[mode]


def _load(data: bytes, variant: int) -> None:
    with Image.open(io.BytesIO(data), formats=["PPAN"]) as im:
        size, mode = im.size, im.mode
        assert im.format == "PPAN" and mode in CHANNELS
        assert 1 <= size[0] <= 65535 and 1 <= size[1] <= 65535
        if variant == 1:
            im.verify()
            return
        if variant == 2:
            wanted = (max(size[0] // 8, 1), max(size[1] // 8, 1))
            if im.draft(mode, wanted) is not None:
                size = im.size
        im.load()
        _check_loaded(im, size, mode)
        pixels = im.tobytes()
    if variant == 0:  # a file that loads passes verify()
        with Image.open(io.BytesIO(data), formats=["PPAN"]) as im:
            im.verify()
    return pixels


def _parse(data: bytes) -> None:
    parser = ImageFile.Parser()
    step = 1 + len(data) % 97
    for i in range(0, len(data), step):
        parser.feed(data[i : i + step])
    parsed = parser.close()
    try:
        loaded = _load(data, -1)
    except ppan_fuzz.allowed() as exc:
        raise AssertionError(f"ImageFile.Parser decodes a file that load() rejects: {exc!r}") from exc
    assert parsed.format == "PPAN" and parsed.tobytes() == loaded  # same pixels as from a file


def TestOneInput(data: bytes) -> None:
    variant = len(data) % 5
    with ppan_fuzz.guarded("open"):
        if variant == 3:
            ImageFile.LOAD_TRUNCATED_IMAGES = True
            try:
                _load(data, variant)
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = False
        elif variant == 4 and data.startswith(ppan_fuzz.SIGNATURE):
            _parse(data)
        else:
            _load(data, variant)


if __name__ == "__main__":
    ppan_fuzz.main(TestOneInput)
