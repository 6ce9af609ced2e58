"""JPEG-coefficient subjects on the shared photos: payload size and decoding speed.

Usage: python benchmarks/jpeg_subject.py [--step K] [--limit N] [--pixel-path] [--json FILE]

For every K-th photo of /work/shared/data/segmentation (its original JPEG file and its
mask, 255 = subject):

- the SUBJ payload of ``encode_jpeg_subject`` with each coder (Brotli, context-modelling
  arithmetic coder) as a fraction of the JPEG file, overall and by subject area;
- an estimate of the whole .ppan file: payload + 17-byte SUBJ prefix + the background
  (WebP, scale 4, quality 70) and mask layers as the current codec writes them + 80 bytes
  of container; with ``--pixel-path`` also today's lossless pixel coding of the subject;
- decoding speed in the same run: Pillow's full JPEG decode, our full decode
  (``jpeg_pixels``) and the subject decode from the payload (MP/s of full images).

Every payload is checked: the decoded subject pixels must equal Pillow's.
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

from peterpan_format.jpeg import decode_jpeg_subject, encode_jpeg_subject, jpeg_pixels
from peterpan_format.subject import box_of

DATA = Path("/work/shared/data/segmentation")
CONTAINER_BYTES = 80  # signature, HEAD, chunk headers and CRCs, DONE
SUBJ_PREFIX = 17


def layers_bytes(pixels: np.ndarray, mask: np.ndarray) -> int | None:
    """Size of the BGND and MASK payloads the current codec writes (None if unavailable)."""
    try:
        from peterpan_format import codec
        from peterpan_format.container import Header

        header = Header(mask.shape[1], mask.shape[0], "RGB" if pixels.shape[2] == 3 else "L", 4, 2)
        u8 = np.ascontiguousarray(mask, dtype=np.uint8)
        return len(codec.encode_background(pixels, u8, header, 70)) + len(codec.encode_mask_layer(u8))
    except Exception:  # noqa: BLE001 - the codec is being edited elsewhere; fall back to none
        return None


def pixel_path_bytes(pixels: np.ndarray, mask: np.ndarray) -> int | None:
    try:
        from peterpan_format import subject

        return len(subject.encode(pixels, np.ascontiguousarray(mask, dtype=np.uint8), "auto"))
    except Exception:  # noqa: BLE001
        return None


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--step", type=int, default=1, help="every K-th photo")
    ap.add_argument("--limit", type=int, default=0, help="at most N photos")
    ap.add_argument("--pixel-path", action="store_true", help="also code the subject pixels as today")
    ap.add_argument("--json", type=Path, help="write per-photo results here")
    args = ap.parse_args()

    paths = sorted((DATA / "images").glob("*.jpg"))[:: args.step]
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        sys.exit(f"no photos under {DATA}")
    # Warm up (compile or load the kernels) before timing.
    warm = paths[0].read_bytes()
    with Image.open(DATA / "masks" / f"{paths[0].stem}.png") as m:
        warm_mask = np.asarray(m) > 0
    for coder in ("brotli", "arith"):
        decode_jpeg_subject(encode_jpeg_subject(warm, warm_mask, coder=coder, verify=False), warm_mask)
    jpeg_pixels(warm)

    rows, refused = [], []
    t_pillow = t_full = t_dec_arith = t_dec_brotli = t_enc = 0.0
    for path in paths:
        data = path.read_bytes()
        with Image.open(DATA / "masks" / f"{path.stem}.png") as m:
            mask = np.asarray(m) > 0
        with Image.open(io.BytesIO(data)) as im:
            pixels, dt = timed(lambda: np.asarray(im.convert(im.mode)))
        t_pillow += dt
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        try:
            sizes = {}
            payloads = {}
            for coder in ("brotli", "arith"):
                payloads[coder], dt = timed(encode_jpeg_subject, data, mask, coder=coder, verify=False)
                t_enc += dt
                sizes[coder] = len(payloads[coder])
        except ValueError as exc:
            refused.append((path.name, str(exc)))
            continue
        x0, y0, w, h = box_of(mask)
        sel = mask[y0 : y0 + h, x0 : x0 + w]
        for coder, t_name in (("arith", "a"), ("brotli", "b")):
            got, dt = timed(decode_jpeg_subject, payloads[coder], mask)
            if t_name == "a":
                t_dec_arith += dt
            else:
                t_dec_brotli += dt
            if not np.array_equal(got[sel], pixels[y0 : y0 + h, x0 : x0 + w][sel]):
                sys.exit(f"{path.name}: {coder} payload does not reproduce Pillow's pixels")
        full, dt = timed(jpeg_pixels, data)
        t_full += dt
        if not np.array_equal(full, pixels):
            sys.exit(f"{path.name}: full decode differs from Pillow")
        layers = layers_bytes(pixels, mask)
        row = {
            "id": path.stem,
            "jpeg": len(data),
            "pixels": int(mask.size),
            "area": float(mask.mean()),
            "brotli": sizes["brotli"],
            "arith": sizes["arith"],
            "layers": layers,
        }
        if args.pixel_path:
            row["pixel_path"] = pixel_path_bytes(pixels, mask)
        rows.append(row)

    def med(values):
        return statistics.median(values) if values else float("nan")

    groups = {
        "all": rows,
        "subject < 15%": [r for r in rows if r["area"] < 0.15],
        "subject >= 15%": [r for r in rows if r["area"] >= 0.15],
    }
    print(f"{len(rows)} photos ({len(refused)} refused), JPEG quality as stored\n")
    cols = ["photos", "brotli / JPEG", "arith / JPEG", "arith / brotli", "est. .ppan / JPEG"]
    if args.pixel_path:
        cols.append("pixel path / JPEG")
    print("| group | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, rs in groups.items():
        best = [min(r["brotli"], r["arith"]) for r in rs]
        ppan = [
            (b + SUBJ_PREFIX + (r["layers"] if r["layers"] is not None else 0.05 * r["jpeg"]) + CONTAINER_BYTES)
            / r["jpeg"]
            for b, r in zip(best, rs)
        ]
        cells = [
            str(len(rs)),
            f"{med([r['brotli'] / r['jpeg'] for r in rs]):.3f}",
            f"{med([r['arith'] / r['jpeg'] for r in rs]):.3f}",
            f"{med([r['arith'] / r['brotli'] for r in rs]):.3f}",
            f"{med(ppan):.3f}",
        ]
        if args.pixel_path:
            cells.append(f"{med([r['pixel_path'] / r['jpeg'] for r in rs if r.get('pixel_path')]):.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    total_arith = sum(r["arith"] for r in rows)
    total_brotli = sum(r["brotli"] for r in rows)
    print(f"\ntotal bytes: arith / brotli = {total_arith / total_brotli:.3f}")
    layer_share = [r["layers"] / r["jpeg"] for r in rows if r["layers"] is not None]
    if layer_share:
        print(f"background + mask layers / JPEG (median): {med(layer_share):.3f}")
    mp = sum(r["pixels"] for r in rows) / 1e6
    print(f"\ndecoding speed, {mp:.1f} MP of full images:")
    print(f"| decoder | MP/s |\n|---|---|")
    print(f"| Pillow, full JPEG | {mp / t_pillow:.1f} |")
    print(f"| jpeg_pixels (our kernels), full JPEG | {mp / t_full:.1f} |")
    print(f"| decode_jpeg_subject, arith payload | {mp / t_dec_arith:.1f} |")
    print(f"| decode_jpeg_subject, brotli payload | {mp / t_dec_brotli:.1f} |")
    print(f"encoding (both coders, no verification): {mp / t_enc:.1f} MP/s")
    for name, why in refused[:10]:
        print(f"refused {name}: {why}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "refused": refused}, indent=1))


if __name__ == "__main__":
    main()
