"""Rate-distortion optimised quantisation against libjpeg's own coefficients (SUBJ coding 4).

For each photo of people in the val split (ccp_, hsd-; ground-truth masks) and each
quality: the coding-4 payload of libjpeg's coefficients (Pillow's JPEG at that quality,
the blocks the subject needs, coder 2) and of ``subject="high"``'s requantised ones
(jpeg/quantise.py), with the subject PSNR of each. Reports, medians over the photos:

- at the same quality: requantised bytes / libjpeg's, and the PSNR difference (never
  negative: the encoder keeps the subject error within libjpeg's);
- at equal subject PSNR: requantised bytes / the bytes libjpeg's coefficients need for that
  PSNR, interpolated (log bytes) on their curve over all the qualities measured.

    python benchmarks/rdo.py --band 25-50
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from compare import DATA, load
from peterpan_format.jpeg import payload, read_jpeg
from peterpan_format.jpeg.quantise import encode_dct_subject, jpeg_of, subject_error
from rd import AREA_BINS, choose

QUALITIES = (50, 60, 70, 75, 80, 85, 90, 95)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--band", choices=[name.rstrip("%") for *_, name in AREA_BINS] + ["all"], default="25-50")
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args(argv)
    low, high = next(((lo, hi) for lo, hi, name in AREA_BINS if name.rstrip("%") == args.band), (0, 2))
    plain, tuned = {}, {}
    ids = []
    for photo_id in choose(DATA, "people", 0):
        image, mask = load(photo_id, DATA)
        if not low <= mask.mean() < high:
            continue
        ids.append(photo_id)
        pixels, mask = np.asarray(image), mask.astype(np.uint8)
        count = 3 * int(mask.sum())
        for q in QUALITIES:
            img = read_jpeg(jpeg_of(pixels, q))
            plain[photo_id, q] = (len(payload.build(img, mask, "arith")), psnr(subject_error(img, pixels, mask), count))
            data = encode_dct_subject(pixels, mask, q)
            tuned[photo_id, q] = (len(data), psnr(tuned_error(data, pixels, mask), count))
        if args.limit and len(ids) >= args.limit:
            break
    print(f"{len(ids)} photos of people, subject area {args.band}%; coding-4 payloads (coder 2)\n")
    print("| quality | requantised / libjpeg bytes | PSNR gain dB | requantised / libjpeg at equal PSNR |")
    print("|---|---|---|---|")
    for q in QUALITIES:
        same = [tuned[i, q][0] / plain[i, q][0] for i in ids]
        gain = [tuned[i, q][1] - plain[i, q][1] for i in ids]
        equal = [r for i in ids if (r := at_equal(plain, i, *tuned[i, q])) is not None]
        cell = f"{statistics.median(equal):.3f} ({len(equal)} photos)" if equal else "–"
        print(f"| {q} | {statistics.median(same):.3f} | {statistics.median(gain):+.2f} | {cell} |")


def psnr(error: float, count: int) -> float:
    return float("inf") if error == 0 else 10 * np.log10(255**2 * count / error)


def tuned_error(data: bytes, pixels: np.ndarray, mask: np.ndarray) -> float:
    from peterpan_format.jpeg import decode_jpeg_subject
    from peterpan_format.masking import box_of

    x0, y0, w, h = box_of(mask)
    sel = mask[y0 : y0 + h, x0 : x0 + w] != 0
    got = decode_jpeg_subject(data, mask)[sel].astype(np.int64)
    return float(np.sum((got - pixels[y0 : y0 + h, x0 : x0 + w][sel]) ** 2))


def at_equal(plain: dict, photo_id: str, size: int, target: float) -> float | None:
    curve = sorted((p, np.log(b)) for (i, _), (b, p) in plain.items() if i == photo_id)
    ps = [p for p, _ in curve]
    if not ps[0] <= target <= ps[-1]:
        return None
    best = np.minimum.accumulate([b for _, b in curve][::-1])[::-1]  # cheapest at or above each PSNR
    return size / float(np.exp(np.interp(target, ps, best)))


if __name__ == "__main__":
    main()
