"""Rate–distortion of .ppan against JPEG, WebP, AVIF and JPEG XL on the shared photos.

For each photo (ground-truth masks, so the result does not depend on the segmenter) and
each codec setting: bytes, bits/pixel, PSNR and SSIM of the subject and of the background,
encode and decode MP/s. Writes a CSV, a Markdown summary (medians, overall and by
subject-area bin) and two plots: subject PSNR vs bpp and background PSNR vs bpp.

    python benchmarks/rd.py --limit 24 --out out/rd
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
from compare import DATA, choose, load
from peterpan_format.options import max_error_of_quality

try:
    import pillow_jxl  # noqa: F401  (registers JPEG XL)
except ImportError:
    pillow_jxl = None

QUALITIES = (50, 70, 85, 95)
HIGH_QUALITIES = (95, 90, 80, 70)  # subject="high": maximum errors 1, 2, 4, 6
LOSSLESS_DB = 60.0  # PSNR reported for bit-exact pixels
AREA_BINS = ((0, 0.10, "<10%"), (0.10, 0.25, "10-25%"), (0.25, 0.50, "25-50%"), (0.50, 1.01, ">50%"))


def settings(mask: np.ndarray, source: bytes) -> list[tuple[str, str, float, dict]]:
    """(codec, label, x-value for sorting, save params) of every setting measured.

    ``source`` is the photo's JPEG file: "ppan jpeg" keeps its subject coefficients (coding 4),
    which reproduce the decoded pixels exactly.
    """
    rows = [("ppan", f"ppan s{s}", 100 + s, {"format": "PPAN", "mask": mask, "background_scale": s})
            for s in (2, 4)]
    rows.append(("ppan", "ppan jpeg", 99, {"format": "PPAN", "mask": mask, "jpeg_source": source}))
    rows += [("ppan high", f"ppan high q{q} (N={max_error_of_quality(q)})", q,
              {"format": "PPAN", "mask": mask, "subject": "high", "subject_quality": q}) for q in HIGH_QUALITIES]
    for fmt in ("JPEG", "WEBP", "AVIF") + (("JXL",) if pillow_jxl else ()):
        rows += [(fmt.lower(), f"{fmt.lower()} q{q}", q, {"format": fmt, "quality": q}) for q in QUALITIES]
    rows.append(("webp", "webp lossless", 101, {"format": "WEBP", "lossless": True}))
    if pillow_jxl:
        rows.append(("jxl", "jxl lossless", 101, {"format": "JXL", "lossless": True}))
    return rows


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2)) if a.size else 0.0
    return LOSSLESS_DB if mse == 0 else min(LOSSLESS_DB, 10 * np.log10(255**2 / mse))


def ssim_map(a: np.ndarray, b: np.ndarray, size: int = 7) -> np.ndarray:
    """SSIM of the luma of two RGB images, per pixel, with a uniform size x size window."""
    def luma(x):
        return x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])

    def mean(x):
        pad = size // 2
        c = np.pad(x, pad, mode="edge").cumsum(0).cumsum(1)
        c = np.pad(c, ((1, 0), (1, 0)))
        return (c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]) / size**2

    x, y = luma(a), luma(b)
    mx, my = mean(x), mean(y)
    vx, vy, cov = mean(x * x) - mx**2, mean(y * y) - my**2, mean(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def measure(photo_id: str, image: Image.Image, mask: np.ndarray, source: bytes) -> list[dict]:
    pixels = np.asarray(image)
    megapixels = image.width * image.height / 1e6
    rows = []
    for codec, label, x, params in settings(mask, source):
        params = dict(params)
        fmt = params.pop("format")
        out = io.BytesIO()
        start = time.perf_counter()
        image.save(out, fmt, **params)
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        decoded = np.asarray(Image.open(io.BytesIO(out.getvalue())).convert("RGB"))
        decode_s = time.perf_counter() - start
        ssim = ssim_map(decoded, pixels)
        rows.append({
            "id": photo_id, "codec": codec, "setting": label, "x": x, "subject_area": float(mask.mean()),
            "bytes": len(out.getvalue()), "bpp": len(out.getvalue()) * 8 / (megapixels * 1e6),
            "subject_psnr": psnr(decoded[mask], pixels[mask]),
            "background_psnr": psnr(decoded[~mask], pixels[~mask]),
            "subject_ssim": float(ssim[mask].mean()) if mask.any() else 1.0,
            "background_ssim": float(ssim[~mask].mean()) if (~mask).any() else 1.0,
            "encode_mps": megapixels / encode_s, "decode_mps": megapixels / decode_s,
        })
    return rows


def summary(rows: list[dict]) -> str:
    keys = ("bpp", "subject_psnr", "background_psnr", "subject_ssim", "background_ssim", "encode_mps", "decode_mps")
    labels = sorted({(r["codec"], r["x"], r["setting"]) for r in rows})
    lines = ["| setting | bpp | subject PSNR | background PSNR | subject SSIM | background SSIM | encode MP/s | decode MP/s |",
             "|---|---|---|---|---|---|---|---|"]
    for _, _, label in labels:
        subset = [r for r in rows if r["setting"] == label]
        values = [statistics.median(r[k] for r in subset) for k in keys]
        lines.append(f"| {label} | {values[0]:.2f} | {values[1]:.1f} | {values[2]:.1f} | {values[3]:.4f} | "
                     f"{values[4]:.4f} | {values[5]:.2f} | {values[6]:.1f} |")
    lines += ["", "Median bytes of `ppan s4` / bytes of each setting, by subject area:", "",
              "| setting | " + " | ".join(name for _, _, name in AREA_BINS) + " | all |",
              "|---|" + "---|" * (len(AREA_BINS) + 1)]
    by_photo = {(r["id"], r["setting"]): r for r in rows}
    ids = sorted({r["id"] for r in rows})
    for _, _, label in labels:
        cells = []
        for low, high, _ in AREA_BINS + ((0, 2, "all"),):
            ratios = [by_photo[(i, "ppan s4")]["bytes"] / by_photo[(i, label)]["bytes"] for i in ids
                      if low <= by_photo[(i, label)]["subject_area"] < high]
            cells.append(f"{statistics.median(ratios):.2f} ({len(ratios)})" if ratios else "–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", high_against_jpeg95(rows, by_photo, ids)])


def high_against_jpeg95(rows: list[dict], by_photo: dict, ids: list[str]) -> str:
    """The issue's test of subject="high": per photo, the smallest "ppan high" file whose
    subject PSNR is at least JPEG q95's, over JPEG q95's bytes."""
    ratios, picked = [], {}
    for i in ids:
        jpeg = by_photo[(i, "jpeg q95")]
        good = [r for r in rows if r["id"] == i and r["codec"] == "ppan high" and r["subject_psnr"] >= jpeg["subject_psnr"]]
        best = min(good, key=lambda r: r["bytes"], default=by_photo[(i, "ppan s4")])  # else lossless
        picked[best["setting"]] = picked.get(best["setting"], 0) + 1
        ratios.append(best["bytes"] / jpeg["bytes"])
    return (f"`subject=\"high\"` at a subject PSNR >= JPEG q95's on the same photo: median bytes / JPEG q95 "
            f"= {statistics.median(ratios):.2f} ({len(ratios)} photos; settings picked: "
            + ", ".join(f"{k} x{v}" for k, v in sorted(picked.items())) + ")")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, title in ((axes[0], "subject_psnr", "subject"), (axes[1], "background_psnr", "background")):
        for codec in sorted({r["codec"] for r in rows}):
            points = sorted({(r["x"], r["setting"]) for r in rows if r["codec"] == codec})
            xs = [statistics.median(r["bpp"] for r in rows if r["setting"] == label) for _, label in points]
            ys = [statistics.median(r[key] for r in rows if r["setting"] == label) for _, label in points]
            lossy = [(x, y) for x, y in zip(xs, ys) if y < LOSSLESS_DB]
            exact = [(x, y) for x, y in zip(xs, ys) if y >= LOSSLESS_DB]
            style = "s" if codec == "ppan" else "o-"  # ppan's lossless settings are points
            line = ax.plot(*zip(*lossy), style, label=codec)[0] if lossy else None
            if exact:
                ax.plot(*zip(*exact), "*", markersize=12, color=line.get_color() if line else None,
                        label=None if line else codec)
        ax.axhline(LOSSLESS_DB, color="grey", lw=0.5)
        ax.set_xlabel("bits per pixel (whole image, median)")
        ax.set_ylabel(f"{title} PSNR dB (median; {LOSSLESS_DB:.0f} = lossless, stars)")
        ax.set_title(f"{title} quality vs size")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=24, help="number of val photos")
    parser.add_argument("--out", type=Path, default=Path("out/rd"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for photo_id in choose(args.data, args.limit):
        rows += measure(photo_id, *load(photo_id, args.data), (args.data / "images" / f"{photo_id}.jpg").read_bytes())
    with (args.out / "rd.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = summary(rows)
    (args.out / "rd.md").write_text(table + "\n")
    plot(rows, args.out / "rd.png")
    print(f"{len({r['id'] for r in rows})} photos; CSV, table and plot in {args.out}/\n")
    print(table)


if __name__ == "__main__":
    main()
