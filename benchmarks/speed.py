"""Photo-scale speed and decode memory of .ppan against Pillow's codecs (issue 15).

For every JPEG photo in a folder (grouped by size: ~1, 12, 24 and 48 MP) with a centred
elliptical subject covering 30% of the frame:

- the JPEG-source path: ``from_jpeg`` encode and ``Image.open().load()`` decode (SUBJ
  coding 4), against Pillow's decode of the same JPEG;
- the pixel path: the same photo saved with ``subject_coding="cm"`` (SUBJ coding 3),
  against WebP lossless and PNG of the same pixels;
- the peak memory of each .ppan decode above the process's size before it (in a fresh
  process, Linux's VmHWM reset through /proc/self/clear_refs), as a multiple of the output
  image (W x H x channels bytes);
- ``thumbnail((256, 256))`` of the .ppan (Pillow's draft(): the background layer only).

Times are wall-clock, the best of ``--repeat`` runs, in one process, so every ratio
compares codecs under the same machine load. Prints Markdown tables (medians per size
class) and writes every measurement to ``--csv``.

    python benchmarks/speed.py PHOTOS [--csv out/speed.csv] [--cache out/speed-cache]

The photos are not part of the repository. The ones measured for docs/benchmarks/speed.md
are camera JPEGs from github.com/drewnoakes/metadata-extractor-images ("You are free to use
these however you wish"): Canon EOS 450D, Canon EOS 5D, Nikon D90, Nikon D3100, Oppo R7
Plus and Samsung Galaxy S7 Edge (12-14 MP) and the 22 MP "Issue 266.jpg"; no larger real
photo was found there, so ``--make-set`` builds the rest from the 12 MP ones:

    python benchmarks/speed.py --make-set SOURCE_DIR PHOTOS

copies the source JPEGs, downscales each to ~1 MP (Lanczos, JPEG q90) and tiles 4000x3000
crops of them side by side into 24 MP (8000x3000) and 48 MP (8000x6000) JPEGs (q90, 4:2:0).
Reference WebP/PNG encodings (slow at this size: WebP lossless method 4 runs at ~0.2-1.5
MP/s) are kept in ``--cache`` so that a rerun skips them.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import peterpan_format
from peterpan_format import container
from peterpan_format.subject import CM, JPEG

from compare import timed  # benchmarks/compare.py (this folder is on the path)

CLASSES = ((3, "~1 MP"), (18, "12 MP"), (36, "24 MP"), (float("inf"), "48 MP"))
SUBJECT_AREA = 0.30
THUMBNAIL = (256, 256)
WEBP_LOSSLESS = {"lossless": True, "quality": 100, "method": 4}
SOURCES = [
    "Canon EOS 450D.jpg", "Nikon D90.jpg", "Canon EOS 5D.jpg", "Samsung SM-G935L (Galaxy S7 Edge).jpg",
    "Oppo R7 Plus.jpg", "Nikon D3100.jpg",
]  # fmt: skip
REAL_24MP = "Issue 266.jpg"

# Run in a fresh process: warm the kernels on a small file of each coding, then decode the
# file given and report the peak resident memory above the size just before the decode.
_PEAK = r"""
import io, sys
from PIL import Image
import peterpan_format
def status(key):
    return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1]) * 1024
for warm in sys.argv[2:]:
    with Image.open(warm) as im:
        im.load()
data = open(sys.argv[1], "rb").read()
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
with Image.open(io.BytesIO(data)) as im:
    im.load()
    size = im.width * im.height * len(im.getbands())
print(status("VmHWM") - before, size)
"""


def ellipse(width: int, height: int, area: float = SUBJECT_AREA) -> np.ndarray:
    """A centred ellipse with the image's aspect ratio covering ``area`` of the frame."""
    y, x = np.ogrid[:height, :width]
    a = (area * width * width / np.pi) ** 0.5
    b = (area * height * height / np.pi) ** 0.5
    return ((((x - width / 2) / a) ** 2 + ((y - height / 2) / b) ** 2) <= 1).astype(np.uint8)


def subject_bytes(data: bytes, coding: int) -> int:
    """Bytes of the SUBJ chunk of a .ppan file, which must hold ``coding``."""
    fp = io.BytesIO(data)
    container.read_head(fp)
    while True:
        chunk_type, payload = container.read_chunk(fp)
        if chunk_type == container.SUBJ:
            if payload[0] != coding:
                raise SystemExit(f"expected SUBJ coding {coding}, found {payload[0]}")
            return len(payload)


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im


def thumbnail(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.thumbnail(THUMBNAIL)
        return im


def peak_memory(path: Path, warm: list[Path]) -> float:
    """Peak resident memory of decoding ``path`` in a fresh process, / the output image."""
    out = subprocess.run([sys.executable, "-c", _PEAK, str(path), *map(str, warm)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"memory probe of {path} failed: {out.stderr[-2000:]}")
    peak, size = map(int, out.stdout.split())
    return peak / size


def reference(cache: Path, name: str, image: Image.Image, fmt: str, params: dict) -> bytes:
    """The photo encoded by Pillow as ``fmt``, kept in ``cache`` (these encoders are slow)."""
    path = cache / f"{name}.{fmt.lower()}"
    if not path.exists():
        out = io.BytesIO()
        image.save(out, fmt, **params)
        path.write_bytes(out.getvalue())
    return path.read_bytes()


def measure(path: Path, cache: Path, repeat: int) -> dict:
    source = path.read_bytes()
    with Image.open(path) as im:
        image = im.convert("RGB")
    width, height = image.size
    mp = width * height / 1e6
    mask = ellipse(width, height)
    row = {"photo": path.name, "width": width, "height": height, "mp": round(mp, 2),
           "class": next(name for limit, name in CLASSES if mp < limit)}

    t, _ = timed(lambda: decode(source), repeat)
    row["jpeg_decode"] = mp / t
    t, ppan_jpeg = timed(lambda: peterpan_format.from_jpeg(source, mask=mask), repeat)
    row["ppan_jpeg_encode"] = mp / t
    t, _ = timed(lambda: decode(ppan_jpeg), repeat)
    row["ppan_jpeg_decode"] = mp / t
    row["ppan_jpeg_bytes"] = len(ppan_jpeg)
    row["jpeg_bytes"] = len(source)
    row["subject_bytes"] = subject_bytes(ppan_jpeg, JPEG)

    def save_cm():
        out = io.BytesIO()
        image.save(out, "PPAN", mask=mask, subject_coding="cm")
        return out.getvalue()

    t, ppan_cm = timed(save_cm, repeat)
    row["cm_subject_bytes"] = subject_bytes(ppan_cm, CM)
    row["ppan_cm_encode"] = mp / t
    t, _ = timed(lambda: decode(ppan_cm), repeat)
    row["ppan_cm_decode"] = mp / t
    for fmt, params in (("WEBP", WEBP_LOSSLESS), ("PNG", {})):
        data = reference(cache, path.stem, image, fmt, params)
        t, _ = timed(lambda: decode(data), repeat)
        row[f"{fmt.lower()}_decode"] = mp / t
    t, _ = timed(lambda: thumbnail(ppan_jpeg), repeat)
    row["thumbnail_ms"] = 1000 * t

    files = {}
    for name, data in (("jpeg", ppan_jpeg), ("cm", ppan_cm)):
        files[name] = cache / f"{path.stem}.{name}.ppan"
        files[name].write_bytes(data)
    warm = [cache / "warm.jpeg.ppan", cache / "warm.cm.ppan"]
    for name, p in files.items():
        row[f"ppan_{name}_peak"] = peak_memory(p, warm)
    return row


def write_warm_files(cache: Path) -> None:
    """Small files of both codings, decoded first in the memory probe (kernel loading)."""
    rng = np.random.default_rng(0)  # photo-like enough for coder 2 (arithmetic) to win
    y, x = np.mgrid[0:256, 0:256]
    smooth = np.stack([x, y, (x + y) // 2], axis=2) + rng.integers(0, 8, (256, 256, 3))
    pixels = smooth.astype(np.uint8)
    jpeg = io.BytesIO()
    Image.fromarray(pixels).save(jpeg, "JPEG", quality=90)
    mask = ellipse(256, 256)
    (cache / "warm.jpeg.ppan").write_bytes(peterpan_format.from_jpeg(jpeg.getvalue(), mask=mask, subject="jpeg"))
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PPAN", mask=mask, subject_coding="cm")
    (cache / "warm.cm.ppan").write_bytes(out.getvalue())


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def report(rows: list[dict]) -> str:
    lines = [
        "| size | photos | JPEG source: encode MP/s | decode MP/s | / Pillow JPEG decode | "
        "peak / image | pixel subject: encode MP/s | decode MP/s | / WebP-LL decode | / PNG decode | "
        "peak / image | thumbnail ms | .ppan / JPEG bytes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, name in CLASSES:
        group = [r for r in rows if r["class"] == name]
        if not group:
            continue
        ratio = lambda a, b: statistics.median(r[a] / r[b] for r in group)  # noqa: E731
        lines.append(
            f"| {name} | {len(group)} | {median(group, 'ppan_jpeg_encode'):.2f} | {median(group, 'ppan_jpeg_decode'):.1f} | "
            f"{ratio('ppan_jpeg_decode', 'jpeg_decode'):.3f} | {median(group, 'ppan_jpeg_peak'):.2f} | "
            f"{median(group, 'ppan_cm_encode'):.2f} | {median(group, 'ppan_cm_decode'):.1f} | "
            f"{ratio('ppan_cm_decode', 'webp_decode'):.2f} | {ratio('ppan_cm_decode', 'png_decode'):.2f} | "
            f"{median(group, 'ppan_cm_peak'):.2f} | {median(group, 'thumbnail_ms'):.0f} | "
            f"{ratio('ppan_jpeg_bytes', 'jpeg_bytes'):.3f} |"
        )
    lines.append("")
    lines.append("| size | Pillow JPEG decode MP/s | WebP-LL decode MP/s | PNG decode MP/s |")
    lines.append("|---|---|---|---|")
    for _, name in CLASSES:
        group = [r for r in rows if r["class"] == name]
        if group:
            lines.append(f"| {name} | {median(group, 'jpeg_decode'):.1f} | {median(group, 'webp_decode'):.1f} | "
                         f"{median(group, 'png_decode'):.1f} |")
    return "\n".join(lines)


def make_set(source: Path, out: Path) -> None:
    """Copy the source photos and build ~1 MP downscales and 24 / 48 MP tiles of them."""
    out.mkdir(parents=True, exist_ok=True)
    for name in SOURCES + [REAL_24MP]:
        shutil.copy(source / name, out / name.replace(" ", "_"))

    def crop(name: str) -> Image.Image:
        with Image.open(source / name) as im:
            im = im.convert("RGB")
        if im.width < im.height:
            im = im.rotate(90, expand=True)
        x, y = (im.width - 4000) // 2, (im.height - 3000) // 2
        return im.crop((x, y, x + 4000, y + 3000))

    for i, pair in enumerate([(0, 1), (2, 3)]):
        tile = Image.new("RGB", (8000, 3000))
        for k, j in enumerate(pair):
            tile.paste(crop(SOURCES[j]), (4000 * k, 0))
        tile.save(out / f"tile24_{i}.jpg", quality=90)
    for i, quad in enumerate([(0, 1, 2, 3), (4, 5, 0, 2)]):
        tile = Image.new("RGB", (8000, 6000))
        for k, j in enumerate(quad):
            tile.paste(crop(SOURCES[j]), (4000 * (k % 2), 3000 * (k // 2)))
        tile.save(out / f"tile48_{i}.jpg", quality=90)
    for name in SOURCES:
        with Image.open(source / name) as im:
            im = im.convert("RGB")
        s = (1e6 / (im.width * im.height)) ** 0.5
        small = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
        small.save(out / f"small_{name.replace(' ', '_')}", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path, nargs="?", help="folder of JPEG photos")
    parser.add_argument("--make-set", nargs=2, type=Path, metavar=("SOURCE", "OUT"))
    parser.add_argument("--cache", type=Path, default=Path("out/speed-cache"))
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="at most this many photos per size class")
    args = parser.parse_args()
    if args.make_set:
        make_set(*args.make_set)
        return
    if args.photos is None:
        parser.error("give a folder of photos (or --make-set SOURCE OUT)")
    args.cache.mkdir(parents=True, exist_ok=True)
    write_warm_files(args.cache)
    paths = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    print(f"{len(paths)} photos, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    rows, per_class = [], {}
    for path in paths:
        with Image.open(path) as im:
            mp = im.width * im.height / 1e6
        name = next(n for limit, n in CLASSES if mp < limit)
        if args.limit and per_class.get(name, 0) >= args.limit:
            continue
        per_class[name] = per_class.get(name, 0) + 1
        row = measure(path, args.cache, args.repeat)
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), file=sys.stderr)
    print(f"load average at the end {os.getloadavg()[0]:.1f}", file=sys.stderr)
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    print(report(rows))


if __name__ == "__main__":
    main()
