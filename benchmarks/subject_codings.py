"""Bits per subject pixel and encode/decode time of each SUBJ coding on the shared photos.

For each val photo (spread over the sources, with its ground-truth mask): the subject's box
crop is coded with every SUBJ coding (spec §6) and decoded again; prints a Markdown table of
medians over the photos: bits per subject pixel, the ratio to MED + Brotli q11 (coding 2 as
the reference encoder writes it), encode and decode µs per subject pixel (wall clock, best of
``--repeat``), and how often each coding is the smallest.

    python benchmarks/subject_codings.py --limit 40 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import brotli
import numpy as np
from PIL import Image

from peterpan_format import subject
from peterpan_format._kernels.predict import med_encode

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "segmentation"


def _med_q9(crop, crop_mask):
    residuals = med_encode(crop, crop_mask).tobytes()
    return brotli.compress(residuals, quality=9, lgwin=subject.BROTLI_WINDOW)


# name: (encoder, decoder(data, crop, crop_mask, box, channels))
CODINGS = {
    "webp (1)": (subject._encode_webp, lambda d, c, m, b, ch: subject._decode_webp(d, b, ch)),
    "med + brotli q9 (2)": (_med_q9, lambda d, c, m, b, ch: subject._decode_med(d, m, ch)),
    "med + brotli q11 (2)": (subject._encode_med, lambda d, c, m, b, ch: subject._decode_med(d, m, ch)),
    "cm (3)": (subject._encode_cm, lambda d, c, m, b, ch: subject._decode_cm(d, m, ch)),
}
REFERENCE = "med + brotli q11 (2)"


def choose(data: Path, limit: int) -> list[str]:
    """Up to ``limit`` val photos, spread evenly over the sources (as benchmarks/compare.py)."""
    ids = (data / "splits" / "val.txt").read_text().split()
    by_source: dict[str, list[str]] = {}
    for photo_id in ids:
        by_source.setdefault(photo_id.split("_")[0].split("-")[0], []).append(photo_id)
    per_source = max(1, limit // len(by_source))
    return [p for group in by_source.values()
            for p in group[:: max(1, len(group) // per_source)][:per_source]]


def load_crop(photo_id: str, data: Path):
    with Image.open(data / "images" / f"{photo_id}.jpg") as im:
        pixels = np.asarray(im.convert("RGB"))
    with Image.open(data / "masks" / f"{photo_id}.png") as m:
        mask = (np.asarray(m) > 0).astype(np.uint8)
    box = subject.box_of(mask)
    x0, y0, w, h = box
    crop = np.ascontiguousarray(pixels[y0 : y0 + h, x0 : x0 + w])
    crop_mask = np.ascontiguousarray(mask[y0 : y0 + h, x0 : x0 + w])
    return crop, crop_mask, box


def best_time(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def measure(photo_id: str, data: Path, repeat: int) -> dict:
    crop, crop_mask, box = load_crop(photo_id, data)
    n = int(crop_mask.sum())
    channels = crop.shape[2]
    row = {"id": photo_id, "n": n}
    for name, (encode, decode) in CODINGS.items():
        enc_s, payload = best_time(lambda: encode(crop, crop_mask), repeat)
        dec_s, values = best_time(lambda: decode(payload, crop, crop_mask, box, channels), repeat)
        if not np.array_equal(values[crop_mask != 0], crop[crop_mask != 0]):
            raise AssertionError(f"{name} does not round-trip on {photo_id}")
        row[name] = (len(payload) * 8 / n, enc_s * 1e6 / n, dec_s * 1e6 / n)
    return row


def report(rows: list[dict]) -> str:
    lines = [
        f"{len(rows)} photos, median over photos; µs per subject pixel, wall clock, best of the repeats",
        "",
        "| coding | bits / subject px | vs MED + Brotli q11 | encode µs/px | decode µs/px | decode MP/s "
        "| smallest on |",
        "|---|---|---|---|---|---|---|",
    ]
    winners = [min(CODINGS, key=lambda name: r[name][0]) for r in rows]
    for name in CODINGS:
        bits = statistics.median(r[name][0] for r in rows)
        ratio = statistics.median(r[name][0] / r[REFERENCE][0] for r in rows)
        enc = statistics.median(r[name][1] for r in rows)
        dec = statistics.median(r[name][2] for r in rows)
        lines.append(
            f"| {name} | {bits:.2f} | {ratio:.3f} | {enc:.3f} | {dec:.3f} | {1 / dec:.1f} | "
            f"{winners.count(name)}/{len(rows)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=40, help="number of val photos")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats per photo and coding")
    args = parser.parse_args()
    ids = choose(args.data, args.limit)
    # compile / load the kernels before timing
    crop, crop_mask, box = load_crop(ids[0], args.data)
    for encode, decode in CODINGS.values():
        decode(encode(crop, crop_mask), crop, crop_mask, box, crop.shape[2])
    rows = [measure(photo_id, args.data, args.repeat) for photo_id in ids]
    print(report(rows))


if __name__ == "__main__":
    main()
