"""Compile every Numba kernel into the cache ahead of time: ``python -m peterpan_format.warmup``.

A fresh environment compiles each kernel the first time it is used, which makes the first
.ppan file a process decodes or saves take seconds. Run this once where the package is
installed, e.g. in a container image's build step, as the user that will use the package
(the cache is per user, see ``peterpan_format._kernels.cache``; or give both the same
writable ``NUMBA_CACHE_DIR``)::

    RUN pip install peterpan-format && python -m peterpan_format.warmup

Compiled code is specific to the CPU it was compiled on: warm on the machine kind that runs
it. It saves and opens tiny images in every mode, subject mode and coding, a JPEG source's
coefficients with both coders, a thumbnail and the segmenter's post-processing.
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image

SIZE = (32, 24)
SAVES = ({}, {"subject_coding": "med"}, {"subject_coding": "webp"}, {"subject": "near-lossless"},
         {"subject": "high"}, {"no_subject": "keep"})


def _round_trip(image: Image.Image, **params) -> None:
    out = io.BytesIO()
    image.save(out, "PPAN", **params)
    for size in (None, (1, 1)):  # the whole image, then a thumbnail from the background
        with Image.open(out) as im:
            if size:
                im.draft(None, size)
            im.load()


def warm() -> None:
    """Run every kernel once on tiny inputs (compiling it, or loading it from the cache)."""
    from . import jpeg
    from .segment.postprocess import postprocess

    rng = np.random.default_rng(0)
    mask = np.zeros(SIZE[::-1], bool)
    mask[4:20, 6:26] = True
    for channels, mode in ((1, "L"), (3, "RGB"), (4, "RGBA")):
        image = Image.fromarray(rng.integers(0, 256, (*SIZE[::-1], channels), np.uint8).squeeze(), mode)
        for params in SAVES:
            _round_trip(image, mask=np.zeros_like(mask) if "no_subject" in params else mask, **params)
    for mode in ("L", "RGB"):
        source = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (*SIZE[::-1], 3), np.uint8)).convert(mode).save(source, "JPEG")
        with Image.open(source) as image:
            _round_trip(image, mask=mask, subject="jpeg", jpeg_source=source.getvalue())
        for coder in ("brotli", "arith"):
            jpeg.decode_jpeg_subject(jpeg.encode_jpeg_subject(source.getvalue(), mask, coder=coder), mask)
    postprocess(mask.astype(np.uint8), {1: "person"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m peterpan_format.warmup", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    import numba

    from ._kernels.cache import cache_dir

    start = time.perf_counter()
    warm()
    where = numba.config.CACHE_DIR or cache_dir()  # NUMBA_CACHE_DIR, when set, holds them
    print(f"peterpan-format: kernels ready in {time.perf_counter() - start:.1f} s; cache: {where}")


if __name__ == "__main__":
    main()
