""".ppan files made from JPEG files (SUBJ coding 4) on the shared photos: size and speed.

Usage: python benchmarks/jpeg_subject.py [--step K] [--limit N] [--pixel-path] [--json FILE]

For every K-th photo of ../shared/data/segmentation (its original JPEG file and its
mask, 255 = subject), in one run:

- ``peterpan_format.from_jpeg(jpeg, mask=mask)`` with the default options: the whole
  .ppan file as a fraction of the JPEG file, overall and by subject area; every file is
  decoded and its subject pixels compared with Pillow's decoding of the JPEG;
- the coefficient payload with each coder (Brotli, context-modelling arithmetic coder);
- with ``--pixel-path`` also the file with the subject coded as pixels (coding 3);
- decoding speed, MP/s of whole images: Pillow's JPEG decode, ``Image.open(.ppan).load()``.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import peterpan_format
from peterpan_format.container import SUBJ, read_chunk, read_head
from peterpan_format.jpeg import encode_jpeg_subject
from peterpan_format.subject import NAMES

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "segmentation"
SMALL = 0.15


def load(data: bytes) -> tuple[np.ndarray, float]:
    """Decoded pixels (H, W, C) and the seconds Image.open + load took."""
    start = time.perf_counter()
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        seconds = time.perf_counter() - start
        pixels = np.asarray(im)
    return pixels.reshape(*pixels.shape[:2], -1), seconds


def measure(path: Path, pixel_path: bool) -> dict:
    data = path.read_bytes()
    with Image.open(DATA / "masks" / f"{path.stem}.png") as m:
        mask = np.asarray(m) > 0
    ppan = peterpan_format.from_jpeg(data, mask=mask)
    original, t_jpeg = load(data)
    decoded, t_ppan = load(ppan)
    if not np.array_equal(decoded[mask], original[mask]):
        sys.exit(f"{path.name}: the .ppan subject differs from Pillow's decoding of the JPEG")
    row = {"id": path.stem, "jpeg": len(data), "ppan": len(ppan), "area": float(mask.mean()),
           "pixels": int(mask.size), "t_jpeg": t_jpeg, "t_ppan": t_ppan, "coding": _coding(ppan)}
    if mask.any():
        try:
            for coder in ("brotli", "arith"):
                row[coder] = len(encode_jpeg_subject(data, mask, coder=coder, verify=False))
        except ValueError as exc:
            row["refused"] = str(exc)
    if pixel_path:
        row["pixel_path"] = len(peterpan_format.from_jpeg(data, mask=mask, subject_coding="cm"))
    return row


def _coding(ppan: bytes) -> str:
    fp = io.BytesIO(ppan)
    read_head(fp)
    while True:
        chunk_type, data = read_chunk(fp)
        if chunk_type == SUBJ:
            return NAMES[data[0]]


def report(rows: list[dict]) -> None:
    def med(values):
        return f"{statistics.median(values):.3f}" if values else "–"

    groups = {"all": rows, f"subject < {SMALL:.0%}": [r for r in rows if r["area"] < SMALL],
              f"subject >= {SMALL:.0%}": [r for r in rows if r["area"] >= SMALL]}
    pixel_path = any("pixel_path" in r for r in rows)
    print("| photos | n | .ppan / JPEG | arith / JPEG | brotli / JPEG | arith / brotli |"
          + (" .ppan with pixel subject / JPEG |" if pixel_path else ""))
    print("|---|---|---|---|---|---|" + ("---|" if pixel_path else ""))
    for name, rs in groups.items():
        coded = [r for r in rs if "arith" in r]
        cells = [name, str(len(rs)), med([r["ppan"] / r["jpeg"] for r in rs]),
                 med([r["arith"] / r["jpeg"] for r in coded]), med([r["brotli"] / r["jpeg"] for r in coded]),
                 med([r["arith"] / r["brotli"] for r in coded])]
        if pixel_path:
            cells.append(med([r["pixel_path"] / r["jpeg"] for r in rs]))
        print("| " + " | ".join(cells) + " |")
    coded = [r for r in rows if "arith" in r]
    print(f"\nall bytes: arith / brotli = {sum(r['arith'] for r in coded) / sum(r['brotli'] for r in coded):.3f}")
    codings = {c: sum(r["coding"] == c for r in rows) for c in sorted({r["coding"] for r in rows})}
    print(f"SUBJ codings chosen: {codings}")
    for r in rows:
        if "refused" in r:
            print(f"refused {r['id']}: {r['refused']}")
    mp = sum(r["pixels"] for r in rows) / 1e6
    t_jpeg, t_ppan = sum(r["t_jpeg"] for r in rows), sum(r["t_ppan"] for r in rows)
    print(f"\ndecode, {mp:.1f} MP: Pillow JPEG {mp / t_jpeg:.1f} MP/s, .ppan {mp / t_ppan:.1f} MP/s "
          f"(ratio {t_jpeg / t_ppan:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--step", type=int, default=1, help="every K-th photo")
    ap.add_argument("--limit", type=int, default=0, help="at most N photos")
    ap.add_argument("--pixel-path", action="store_true", help="also code the subject as pixels")
    ap.add_argument("--json", type=Path, help="write per-photo results here")
    args = ap.parse_args()
    paths = sorted((DATA / "images").glob("*.jpg"))[:: args.step]
    paths = paths[: args.limit] if args.limit else paths
    if not paths:
        sys.exit(f"no photos under {DATA}")
    measure(paths[0], args.pixel_path)  # load the kernels before timing
    rows = [measure(path, args.pixel_path) for path in paths]
    report(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
