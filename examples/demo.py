"""Encode sample photos with the embedded default segmenter and show the result.

For each photo: finds the subject, saves .ppan (a JPEG keeps its subject's own DCT
coefficients), checks the subject decodes bit-exact, prints the sizes against the source
file and JPEG and WebP of the same pixels, and writes a side-by-side
PNG (original | .ppan decoded | subject mask) to out/demo/.

    python examples/demo.py [PHOTO ...]

Without arguments it encodes the sample photos in examples/photos/ (credits there).
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import peterpan_format
from peterpan_format.describe import describe
from peterpan_format.segment import load_segmenter

SAMPLES = Path(__file__).resolve().parent / "photos"
OUT = Path("out/demo")


def size_as(image: Image.Image, fmt: str, **params) -> int:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return len(out.getvalue())


def side_by_side(original: Image.Image, decoded: Image.Image, mask: Image.Image) -> Image.Image:
    overlay = Image.composite(original, Image.blend(original, Image.new("RGB", original.size, "red"), 0.6), mask)
    sheet = Image.new("RGB", (original.width * 3, original.height))
    for i, panel in enumerate((original, decoded.convert("RGB"), overlay)):
        sheet.paste(panel, (i * original.width, 0))
    return sheet


def main(paths: list[str]) -> None:
    photos = [Path(p) for p in paths] or sorted(SAMPLES.glob("*.jpg"))
    OUT.mkdir(parents=True, exist_ok=True)
    segmenter = load_segmenter()
    print(f"{'photo':28} {'subject':>7} {'coding':>6} {'ppan':>8} {'/source':>8} {'/jpeg85':>8} "
          f"{'/webp80':>8} {'/webpLL':>8} {'ms':>6}")
    for path in photos:
        with Image.open(path) as image:  # a JPEG opened from its file keeps its own coefficients
            image.load()
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGB")
            start = time.perf_counter()
            mask = segmenter(image)
            target = OUT / f"{path.stem}.ppan"
            peterpan_format.save(image, target, mask=mask)
            elapsed = (time.perf_counter() - start) * 1000
            pixels, image = np.asarray(image), image.convert("RGB")
        with Image.open(target) as decoded:
            decoded.load()
            subject = np.asarray(mask) > 0
            assert np.array_equal(np.asarray(decoded)[subject], pixels[subject]), "subject changed"
            side_by_side(image, decoded, mask).save(OUT / f"{path.stem}.png")
        size = target.stat().st_size
        coding = describe(target)["subject"]["coding"]
        print(f"{path.stem:28} {subject.mean():7.1%} {coding:>6} {size:8d} {size / path.stat().st_size:8.2f} "
              f"{size / size_as(image, 'JPEG', quality=85, optimize=True):8.2f} "
              f"{size / size_as(image, 'WEBP', quality=80):8.2f} "
              f"{size / size_as(image, 'WEBP', lossless=True):8.2f} {elapsed:6.0f}")
    print(f"\nsubjects decode bit-exact (coding jpeg: exactly as Pillow decodes the source JPEG); "
          f"side-by-side views in {OUT}/")


if __name__ == "__main__":
    main(sys.argv[1:])
