"""Near-lossless subject coding (SUBJ coding 5 = coding 3 with max error N) on the shared photos.

For each val photo (spread over the sources, with its ground-truth mask) the subject's box
crop is coded with the range coder of coding 3 at max error N and decoded again; prints a
Markdown table per N: bits per subject pixel (median over photos, and all photos together;
coding 5's leading byte N counted), subject PSNR (over every channel of the subject pixels:
median over photos, and the worst photo), the largest channel error seen (must be <= N), and
encode / decode speed in subject megapixels per second (all photos together, wall clock,
best of ``--repeat``). N = 0 is coding 3 (lossless).

    python benchmarks/near_lossless.py --limit 40
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import numpy as np

from peterpan_format._kernels.entropy import cm_decode, cm_encode
from subject_codings import DATA, best_time, choose, load_crop

NEARS = (0, 1, 2, 3, 4, 6, 8)


def psnr(mse: float) -> float:
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def measure(crop: np.ndarray, crop_mask: np.ndarray, near: int, repeat: int) -> dict:
    subject = crop_mask != 0
    n = int(subject.sum())
    enc_s, data = best_time(lambda: cm_encode(crop, crop_mask, near), repeat)
    dec_s, (values, status) = best_time(lambda: cm_decode(data, crop_mask, crop.shape[2], near), repeat)
    assert status == 0
    diff = values[subject].astype(np.int64) - crop[subject]
    return {
        "n": n,
        "bits": (data.size + (near > 0)) * 8,
        "sse": float(np.sum(diff * diff)),
        "values": diff.size,
        "max_err": int(np.abs(diff).max()),
        "enc_s": enc_s,
        "dec_s": dec_s,
    }


def report(rows: dict[int, list[dict]]) -> str:
    count = len(next(iter(rows.values())))
    lines = [
        f"{count} photos; bits and PSNR over the subject pixels; MP/s of subject pixels, best of the repeats",
        "",
        "| N | bits / px (median) | bits / px (all) | PSNR dB (median) | PSNR dB (worst) | max error "
        "| encode MP/s | decode MP/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for near, rs in rows.items():
        n = sum(r["n"] for r in rs)
        psnrs = [psnr(r["sse"] / r["values"]) for r in rs]
        lines.append(
            f"| {near} | {statistics.median(r['bits'] / r['n'] for r in rs):.3f} "
            f"| {sum(r['bits'] for r in rs) / n:.3f} | {statistics.median(psnrs):.2f} | {min(psnrs):.2f} "
            f"| {max(r['max_err'] for r in rs)} | {n / sum(r['enc_s'] for r in rs) / 1e6:.1f} "
            f"| {n / sum(r['dec_s'] for r in rs) / 1e6:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=40, help="number of val photos")
    parser.add_argument("--repeat", type=int, default=2, help="timing repeats per photo and N")
    args = parser.parse_args()
    crops = [load_crop(photo_id, args.data)[:2] for photo_id in choose(args.data, args.limit)]
    for near in NEARS:  # compile / load the kernels before timing
        cm_decode(cm_encode(crops[0][0], crops[0][1], near), crops[0][1], crops[0][0].shape[2], near)
    rows = {near: [measure(crop, crop_mask, near, args.repeat) for crop, crop_mask in crops] for near in NEARS}
    for near, rs in rows.items():
        assert max(r["max_err"] for r in rs) <= near, f"an error over {near}"
    print(report(rows))


if __name__ == "__main__":
    main()
