"""Bytes, quality and speed of .ppan against Pillow's codecs on the shared photos.

For each photo (with its ground-truth mask, so the result does not depend on the
segmenter): .ppan bytes against JPEG q85/q95, WebP lossless and PNG of the same pixels;
subject and background PSNR; encode and decode MP/s against Pillow's WebP lossless and
PNG in the same run. Prints Markdown tables (medians), optionally writes a CSV.

    python benchmarks/compare.py --limit 40 --csv out/compare.csv
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

import peterpan_format  # noqa: F401  (registers .ppan)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "segmentation"
CODECS = {
    "ppan": ("PPAN", {}),
    "jpeg_q85": ("JPEG", {"quality": 85, "optimize": True}),
    "jpeg_q95": ("JPEG", {"quality": 95, "optimize": True}),
    "webp_lossless": ("WEBP", {"lossless": True}),
    "png": ("PNG", {}),
}
TIMED = ("ppan", "webp_lossless", "png")


def load(photo_id: str, data: Path) -> tuple[Image.Image, np.ndarray]:
    with Image.open(data / "images" / f"{photo_id}.jpg") as im:
        image = im.convert("RGB")
    with Image.open(data / "masks" / f"{photo_id}.png") as m:
        return image, np.asarray(m) > 0


def timed(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2) if a.size else 0.0
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def measure(photo_id: str, image: Image.Image, mask: np.ndarray, repeat: int) -> dict:
    pixels = np.asarray(image)
    megapixels = image.width * image.height / 1e6
    row = {"id": photo_id, "source": photo_id.split("_")[0].split("-")[0], "subject_area": mask.mean()}
    for name, (fmt, params) in CODECS.items():
        if name == "ppan":
            params = {"mask": mask}

        def encode():
            out = io.BytesIO()
            image.save(out, fmt, **params)
            return out.getvalue()

        encode_s, data = timed(encode, 1)
        decode_s, decoded = timed(lambda: np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), repeat)
        row[f"{name}_bytes"] = len(data)
        if name in TIMED:
            row[f"{name}_encode_mps"] = megapixels / encode_s
            row[f"{name}_decode_mps"] = megapixels / decode_s
        row[f"{name}_subject_psnr"] = psnr(decoded[mask], pixels[mask])
        row[f"{name}_background_psnr"] = psnr(decoded[~mask], pixels[~mask])
    if row["ppan_subject_psnr"] != float("inf"):
        raise AssertionError(f"{photo_id}: subject not bit-exact")
    return row


def choose(data: Path, limit: int) -> list[str]:
    """Up to ``limit`` val photos, spread evenly over the sources."""
    ids = (data / "splits" / "val.txt").read_text().split()
    by_source: dict[str, list[str]] = {}
    for photo_id in ids:
        by_source.setdefault(photo_id.split("_")[0].split("-")[0], []).append(photo_id)
    per_source = max(1, limit // len(by_source))
    return [p for group in by_source.values() for p in group[:: max(1, len(group) // per_source)][:per_source]]


def report(rows: list[dict]) -> str:
    def med(key, subset=rows):
        return statistics.median(r[key] for r in subset)

    lines = ["| ppan bytes / bytes of … | median |", "|---|---|"]
    for name in CODECS:
        if name != "ppan":
            lines.append(f"| {name} | {statistics.median(r['ppan_bytes'] / r[name + '_bytes'] for r in rows):.3f} |")
    lines += ["", "| codec | bits/pixel | subject PSNR dB | background PSNR dB | encode MP/s | decode MP/s |",
              "|---|---|---|---|---|---|"]
    for name in CODECS:
        bpp = statistics.median(r[f"{name}_bytes"] * 8 / (r["megapixels"] * 1e6) for r in rows)
        speed = (f"{med(name + '_encode_mps'):.2f} | {med(name + '_decode_mps'):.1f}"
                 if name in TIMED else "– | –")
        lines.append(f"| {name} | {bpp:.2f} | {med(name + '_subject_psnr'):.1f} | "
                     f"{med(name + '_background_psnr'):.1f} | {speed} |")
    lines += ["", "| speed ratio (same photo, same run) | median |", "|---|---|"]
    for other in TIMED[1:]:
        for op in ("encode", "decode"):
            ratio = statistics.median(r[f"ppan_{op}_mps"] / r[f"{other}_{op}_mps"] for r in rows)
            lines.append(f"| ppan {op} / {other} {op} | {ratio:.2f} |")
    lines += ["", "| source | photos | subject area | ppan / webp_lossless | ppan / jpeg_q85 |", "|---|---|---|---|---|"]
    for source in sorted({r["source"] for r in rows}):
        subset = [r for r in rows if r["source"] == source]
        lines.append(f"| {source} | {len(subset)} | {med('subject_area', subset):.2f} | "
                     f"{statistics.median(r['ppan_bytes'] / r['webp_lossless_bytes'] for r in subset):.3f} | "
                     f"{statistics.median(r['ppan_bytes'] / r['jpeg_q85_bytes'] for r in subset):.3f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="shared segmentation data folder")
    parser.add_argument("--limit", type=int, default=40, help="number of val photos")
    parser.add_argument("--repeat", type=int, default=3, help="decode repetitions (best is kept)")
    parser.add_argument("--csv", type=Path, help="write one row per photo here")
    args = parser.parse_args(argv)
    warm_image, warm_mask = synthetic_warmup()
    warm_image.save(io.BytesIO(), "PPAN", mask=warm_mask)  # compile/load the Numba kernels first
    rows = []
    for photo_id in choose(args.data, args.limit):
        image, mask = load(photo_id, args.data)
        row = measure(photo_id, image, mask, args.repeat)
        row["megapixels"] = image.width * image.height / 1e6
        rows.append(row)
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    print(f"{len(rows)} photos from {args.data}\n")
    print(report(rows))


def synthetic_warmup() -> tuple[Image.Image, np.ndarray]:
    image = Image.effect_noise((64, 48), 40).convert("RGB")
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:40] = True
    return image, mask


if __name__ == "__main__":
    main()
