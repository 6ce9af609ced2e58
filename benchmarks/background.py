"""Background candidates: bytes against background PSNR, on the photos of people of the val split.

The BGND layer of a .ppan is the image area-averaged by the scale s and WebP-coded (§4, §12).
This compares, per photo, the background pixels of the upsampled layer (§8.1, before
feathering) with the original, for:

- WebP (the format's coding 1) and AVIF at scales 4 and 8 and several qualities;
- "fit": the area average refined by a few least-squares steps so that its bicubic
  upsampling fits the background pixels (an encoder-only change), then WebP;
- "jpeg dc": the background made from the source JPEG's own DC coefficients (an 8 x 8 block
  mean each: scale 8), with the bytes an ideal coder would need for them (the empirical
  entropy of their MED prediction residuals, a lower bound, no side information).

    python benchmarks/background.py --band 25-50
"""

from __future__ import annotations

import argparse
import io
import statistics

import numpy as np
from PIL import Image

from compare import DATA, load
from peterpan_format._kernels.resample import area_downsample, bicubic_upsample
from peterpan_format.jpeg import read_jpeg
from rd import AREA_BINS, choose

CODED = [("webp", 4, q) for q in (40, 55, 70, 85)] + [("webp", 8, q) for q in (70, 90)] + \
        [("avif", 4, q) for q in (30, 45, 60, 75)] + [("fit", 4, q) for q in (40, 55, 70)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def fit(pixels: np.ndarray, mask: np.ndarray, s: int, steps: int = 3) -> np.ndarray:
    """The area average, moved toward least squares: each step adds the mean residual of
    the background pixels of each s x s block."""
    h, w = mask.shape
    small = area_downsample(pixels, s, mask).astype(np.float64)
    back = (mask == 0)[:, :, None]
    ph, pw = -(-h // s) * s, -(-w // s) * s
    count = np.zeros((ph, pw))
    count[:h, :w] = back[:, :, 0]
    count = count.reshape(ph // s, s, pw // s, s).sum(axis=(1, 3))[:, :, None]
    for _ in range(steps):
        up = bicubic_upsample(np.clip(np.rint(small), 0, 255).astype(np.uint8), s, w, h)
        residual = np.zeros((ph, pw, 3))
        residual[:h, :w] = (pixels.astype(np.float64) - up) * back
        small += residual.reshape(ph // s, s, pw // s, s, 3).sum(axis=(1, 3)) / np.maximum(count, 1)
        small = np.clip(small, 0, 255)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def coded(kind: str, s: int, q: int, pixels: np.ndarray, mask: np.ndarray) -> tuple[int, np.ndarray]:
    small = fit(pixels, mask, s) if kind == "fit" else area_downsample(pixels, s, mask)
    out = io.BytesIO()
    if kind == "avif":
        Image.fromarray(small).save(out, "AVIF", quality=q)
    else:
        Image.fromarray(small).save(out, "WEBP", quality=q, method=6)
    with Image.open(io.BytesIO(out.getvalue())) as im:
        decoded = np.ascontiguousarray(np.asarray(im.convert("RGB")))
    return len(out.getvalue()), bicubic_upsample(decoded, s, mask.shape[1], mask.shape[0])


def jpeg_dc(source: bytes, shape: tuple[int, int]) -> tuple[float, np.ndarray]:
    """(entropy bytes of the DC residuals, upsampled scale-8 background) of a YCbCr 4:2:0 JPEG."""
    img = read_jpeg(source)
    bits, planes = 0.0, []
    for ci in range(len(img.components)):
        dc = img.blocks(ci)[:, :, 0].astype(np.int64)
        a = np.pad(dc, ((1, 0), (1, 0)), mode="edge")
        w, n, nw = a[1:, :-1], a[:-1, 1:], a[:-1, :-1]
        pred = np.where(nw >= np.maximum(w, n), np.minimum(w, n),
                        np.where(nw <= np.minimum(w, n), np.maximum(w, n), w + n - nw))
        _, counts = np.unique(dc - pred, return_counts=True)
        bits += float(-(counts * np.log2(counts / counts.sum())).sum())
        planes.append(dc * float(img.qtables[ci][0]) / 8 + 128)
    h, w = shape
    y = planes[0]
    cb, cr = (np.kron(p, np.ones((2, 2)))[: y.shape[0], : y.shape[1]] - 128 for p in planes[1:])
    rgb = np.stack([y + 1.402 * cr, y - 0.34414 * cb - 0.71414 * cr, y + 1.772 * cb], axis=2)
    small = np.ascontiguousarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8)[: -(-h // 8), : -(-w // 8)])
    return bits / 8, bicubic_upsample(small, 8, w, h)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--band", choices=[name.rstrip("%") for *_, name in AREA_BINS] + ["all"], default="25-50")
    args = parser.parse_args(argv)
    low, high = next(((lo, hi) for lo, hi, name in AREA_BINS if name.rstrip("%") == args.band), (0, 2))
    results: dict[str, list[tuple[float, float]]] = {}
    for photo_id in choose(DATA, "people", 0):
        image, mask = load(photo_id, DATA)
        if not low <= mask.mean() < high:
            continue
        pixels, mask = np.asarray(image), mask.astype(np.uint8)
        back = mask == 0
        source = (DATA / "images" / f"{photo_id}.jpg").read_bytes()
        for kind, s, q in CODED:
            size, up = coded(kind, s, q, pixels, mask)
            results.setdefault(f"{kind} s{s} q{q}", []).append((size / len(source), psnr(up[back], pixels[back])))
        size, up = jpeg_dc(source, mask.shape)
        results.setdefault("jpeg dc s8 (entropy bound)", []).append((size / len(source), psnr(up[back], pixels[back])))
    print(f"{len(results['webp s4 q70'])} photos of people, subject area {args.band}%\n")
    print("| background | bytes / JPEG file (median) | background PSNR dB (median) |\n|---|---|---|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(v[0] for v in values):.4f} | "
              f"{statistics.median(v[1] for v in values):.2f} |")


if __name__ == "__main__":
    main()
