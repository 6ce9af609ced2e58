"""Rate–distortion of .ppan against JPEG, WebP, AVIF and JPEG XL on the shared val photos.

For each photo (ground-truth masks, so the result does not depend on the segmenter) and
each codec setting: bytes, bits/pixel, PSNR and SSIM of the subject and of the background,
encode and decode MP/s, all in one run. Photos of people (ccp_, hsd-) are reported apart
from the others, and by subject-area band. Writes a CSV, a Markdown summary and two plots.

- `ppan high qN` is ``subject="high", subject_quality=N``: the subject DCT-coded as a JPEG
  at quality N would be, requantised for our coder (SUBJ coding 4).
- Equal subject PSNR: for each photo, each `ppan high` file is compared with what each
  other codec needs for the same subject PSNR, interpolating that codec's bytes (in log
  scale) between its two qualities around that PSNR (photos outside a codec's range are
  left out of that cell and counted).
- `ppan jpeg` is ``peterpan_format.from_jpeg`` of the photo's own JPEG file (the subject is
  exactly Pillow's decoding of it), measured against that file's size.
- The shared photos are JPEG files of quality 90: a JPEG (and so `ppan high`) at quality 90
  re-creates most of their coefficients and gets an unusually high PSNR there. ``--fresh``
  halves each photo (2 x 2 box average, the mask likewise) first, which erases that
  history, so every codec starts from the same kind of pixels (the JPEG-file rows are then
  left out).

Needs the `bench` extra (matplotlib; pillow-jxl-plugin for JPEG XL, skipped if missing).

    python benchmarks/rd.py --set people --out ../docs/benchmarks
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

import peterpan_format
from compare import DATA, load

try:
    import pillow_jxl  # noqa: F401  (registers JPEG XL)
except ImportError:
    pillow_jxl = None

QUALITIES = (30, 40, 50, 60, 70, 80, 85, 90, 95, 98)
HIGH_QUALITIES = (60, 70, 80, 85, 90, 95)
LOSSLESS_DB = 60.0  # PSNR reported for bit-exact pixels
AREA_BINS = ((0, 0.10, "<10%"), (0.10, 0.25, "10-25%"), (0.25, 0.50, "25-50%"), (0.50, 1.01, ">50%"))
PEOPLE = ("ccp", "hsd")


def source_of(photo_id: str) -> str:
    return photo_id.split("_")[0].split("-")[0]


def choose(data: Path, which: str, limit: int) -> list[str]:
    """The val photos of ``which`` ("people": ccp_ and hsd-, "all"), every k-th to ``limit``."""
    ids = [i for i in (data / "splits" / "val.txt").read_text().split() if which == "all" or source_of(i) in PEOPLE]
    return ids[:: max(1, len(ids) // limit)][:limit] if limit else ids


def settings(mask: np.ndarray) -> list[tuple[str, str, float, dict]]:
    """(codec, label, x-value for sorting, save params) of every pixel-input setting."""
    rows = [("ppan", "ppan lossless", 104, {"format": "PPAN", "mask": mask})]
    rows += [("ppan high", f"ppan high q{q}", q, {"format": "PPAN", "mask": mask, "subject": "high",
                                                  "subject_quality": q}) for q in HIGH_QUALITIES]
    for fmt in ("JPEG", "WEBP", "AVIF") + (("JXL",) if pillow_jxl else ()):
        rows += [(fmt.lower(), f"{fmt.lower()} q{q}", q, {"format": fmt, "quality": q}) for q in QUALITIES]
    rows.append(("webp", "webp lossless", 101, {"format": "WEBP", "lossless": True}))
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


def row_of(photo_id, codec, label, x, data, encode_s, pixels, mask, decode) -> dict:
    start = time.perf_counter()
    decoded = decode(data)
    decode_s = time.perf_counter() - start
    ssim = ssim_map(decoded, pixels)
    megapixels = mask.size / 1e6
    return {
        "id": photo_id, "source": source_of(photo_id), "codec": codec, "setting": label, "x": x,
        "subject_area": float(mask.mean()), "bytes": len(data), "bpp": len(data) * 8 / mask.size,
        "subject_psnr": psnr(decoded[mask], pixels[mask]), "background_psnr": psnr(decoded[~mask], pixels[~mask]),
        "subject_ssim": float(ssim[mask].mean()) if mask.any() else 1.0,
        "background_ssim": float(ssim[~mask].mean()) if (~mask).any() else 1.0,
        "encode_mps": megapixels / encode_s, "decode_mps": megapixels / decode_s,
    }


def measure(photo_id: str, image: Image.Image, mask: np.ndarray, source: bytes | None) -> list[dict]:
    pixels = np.asarray(image)

    def decode(data):
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    rows = []
    for codec, label, x, params in settings(mask):
        params = dict(params)
        fmt = params.pop("format")
        out = io.BytesIO()
        start = time.perf_counter()
        image.save(out, fmt, **params)
        rows.append(row_of(photo_id, codec, label, x, out.getvalue(), time.perf_counter() - start, pixels, mask,
                           decode))
    if source is None:
        return rows
    start = time.perf_counter()
    data = peterpan_format.from_jpeg(source, mask=mask)
    row = row_of(photo_id, "ppan jpeg", "ppan from the JPEG file", 103, data, time.perf_counter() - start, pixels,
                 mask, decode)
    rows.append(row | {"source_bytes": len(source)})
    return rows


def at_equal_psnr(rows: list[dict], photo_id: str, codec: str, target: float) -> float | None:
    """Bytes ``codec`` needs on this photo for a subject PSNR of ``target`` (log-linear
    between its two settings around it), or None outside its range."""
    curve = sorted((r["subject_psnr"], np.log(r["bytes"])) for r in rows
                   if r["id"] == photo_id and r["codec"] == codec and r["setting"].split()[-1][0] == "q")
    ps = [p for p, _ in curve]
    if not curve or not ps[0] <= target <= ps[-1]:
        return None
    # a codec's curve is not always monotonic (a re-encode at the source's own quality 90
    # can beat 95): keep the cheapest setting at or above each PSNR
    best = np.minimum.accumulate([b for _, b in curve][::-1])[::-1]
    return float(np.exp(np.interp(target, ps, best)))


def median_cell(values: list[float], total: int) -> str:
    if not values:
        return "–"
    missing = f", {total - len(values)} out of range" if len(values) < total else ""
    return f"{statistics.median(values):.2f} ({len(values)}{missing})"


def bands(rows: list[dict]) -> list[tuple[str, set]]:
    ids = {r["id"]: r["subject_area"] for r in rows}
    out = [(name, {i for i, a in ids.items() if low <= a < high}) for low, high, name in AREA_BINS]
    return [(name, s) for name, s in out if s] + [("all", set(ids))]


def equal_psnr_table(rows: list[dict], ids: set) -> list[str]:
    codecs = sorted({r["codec"] for r in rows} - {"ppan", "ppan high", "ppan jpeg"})
    lines = ["| ppan high / … at equal subject PSNR | " + " | ".join(f"q{q}" for q in HIGH_QUALITIES) + " |",
             "|---|" + "---|" * len(HIGH_QUALITIES)]
    for codec in codecs:
        cells = []
        for q in HIGH_QUALITIES:
            mine = [r for r in rows if r["id"] in ids and r["setting"] == f"ppan high q{q}"]
            ratios = [r["bytes"] / other for r in mine
                      if (other := at_equal_psnr(rows, r["id"], codec, r["subject_psnr"])) is not None]
            cells.append(median_cell(ratios, len(mine)))
        lines.append(f"| {codec} | " + " | ".join(cells) + " |")
    return lines


def summary(rows: list[dict]) -> str:
    keys = ("bpp", "subject_psnr", "background_psnr", "subject_ssim", "background_ssim", "encode_mps", "decode_mps")
    labels = sorted({(r["codec"], r["x"], r["setting"]) for r in rows})
    by = {(r["id"], r["setting"]): r for r in rows}
    groups = bands(rows)
    lines = [f"{len({r['id'] for r in rows})} photos ("
             + ", ".join(f"{name}: {len(s)}" for name, s in groups) + " by subject area)", "",
             "| setting | bpp | subject PSNR | background PSNR | subject SSIM | background SSIM | encode MP/s | decode MP/s |",
             "|---|---|---|---|---|---|---|---|"]
    for _, _, label in labels:
        subset = [r for r in rows if r["setting"] == label]
        v = [statistics.median(r[k] for r in subset) for k in keys]
        lines.append(f"| {label} | {v[0]:.2f} | {v[1]:.1f} | {v[2]:.1f} | {v[3]:.4f} | {v[4]:.4f} | {v[5]:.2f} | "
                     f"{v[6]:.1f} |")
    lines += ["", "**`ppan high` at equal subject PSNR** (median of ppan bytes / the codec's bytes at the same "
              "subject PSNR; photos counted):", ""]
    for name, ids in groups:
        lines += [f"Subject area {name}:", ""] + equal_psnr_table(rows, ids) + [""]
    lines += ["**`ppan high qN` / JPEG qN** (same photo, same quality; median, and how many have a subject PSNR "
              "at least JPEG's):", "", "| quality | " + " | ".join(n for n, _ in groups) + " |",
              "|---|" + "---|" * len(groups)]
    for q in HIGH_QUALITIES:
        cells = []
        for _, ids in groups:
            pairs = [(by[(i, f"ppan high q{q}")], by[(i, f"jpeg q{q}")]) for i in sorted(ids)]
            ratios = [a["bytes"] / b["bytes"] for a, b in pairs]
            ok = sum(a["subject_psnr"] >= b["subject_psnr"] - 1e-9 for a, b in pairs)
            cells.append(f"{statistics.median(ratios):.3f} ({ok}/{len(pairs)})")
        lines.append(f"| q{q} | " + " | ".join(cells) + " |")
    if any(r["codec"] == "ppan jpeg" for r in rows):
        lines += ["", "**JPEG files in** (`from_jpeg` / the photo's own JPEG file, median; the subject is "
                  "exactly Pillow's decoding of the file):", "", "| | " + " | ".join(n for n, _ in groups) + " |",
                  "|---|" + "---|" * len(groups)]
        kept = [[by[(i, "ppan from the JPEG file")] for i in ids] for _, ids in groups]
        cells = [f"{statistics.median(r['bytes'] / r['source_bytes'] for r in group):.3f}" for group in kept]
        lines.append("| .ppan / JPEG file | " + " | ".join(cells) + " |")
    lines += ["", "**Lossless subject** (`ppan lossless` / each, median):", "",
              "| setting | " + " | ".join(n for n, _ in groups) + " |", "|---|" + "---|" * len(groups)]
    for other in ("webp lossless", "jpeg q95", "webp q95"):
        cells = [f"{statistics.median(by[(i, 'ppan lossless')]['bytes'] / by[(i, other)]['bytes'] for i in ids):.2f}"
                 for _, ids in groups]
        lines.append(f"| {other} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
            style = "s" if codec in ("ppan", "ppan jpeg") else "o-"  # single settings are points
            line = ax.plot(*zip(*lossy), style, label=codec)[0] if lossy else None
            if exact:
                ax.plot(*zip(*exact), "*", markersize=12, color=line.get_color() if line else None,
                        label=None if line else codec)
        ax.axhline(LOSSLESS_DB, color="grey", lw=0.5)
        ax.set_xlabel("bits per pixel (whole image, median)")
        ax.set_ylabel(f"{title} PSNR dB (median; {LOSSLESS_DB:.0f} = lossless, stars)")
        ax.set_title(f"{title} quality vs size")
        ax.set_xlim(0, 4)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--set", choices=("people", "all"), default="people",
                        help="people: the ccp_ and hsd- val photos; all: every val photo")
    parser.add_argument("--limit", type=int, default=0, help="at most this many photos (0: all)")
    parser.add_argument("--fresh", action="store_true", help="halve every photo first (see the module doc)")
    parser.add_argument("--out", type=Path, default=Path("out/rd"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for photo_id in choose(args.data, args.set, args.limit):
        image, mask = load(photo_id, args.data)
        source = (args.data / "images" / f"{photo_id}.jpg").read_bytes()
        if args.fresh:
            image = image.reduce(2)
            mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).reduce(2)) >= 128
            source = None
        rows += measure(photo_id, image, mask, source)
    with (args.out / "rd.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[-1]), restval="")
        writer.writeheader()
        writer.writerows(rows)
    text = []
    for title, subset in (("Photos of people (ccp_, hsd-)", [r for r in rows if r["source"] in PEOPLE]),
                          ("Other photos (camvid_, cat_)", [r for r in rows if r["source"] not in PEOPLE])):
        if subset:
            text += [f"## {title}", "", summary(subset), ""]
    table = "\n".join(text)
    (args.out / "rd.md").write_text(table)
    plot([r for r in rows if r["source"] in PEOPLE] or rows, args.out / "rd.png")
    print(f"{len({r['id'] for r in rows})} photos; CSV, table and plot in {args.out}/\n")
    print(table)


if __name__ == "__main__":
    main()
