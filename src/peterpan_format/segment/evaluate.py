"""Evaluate a segmenter on the shared val split: IoU per source, CPU time, size.

    python -m peterpan_format.segment.evaluate [--model DIR_OR_PT] [--data DIR] [--threads 2]

For every val photo (at its stored size, long side <= 512 px) the ground-truth subject
is the set of pixels whose class (``masks_class/``) is one the model knows (default
model: person, cat; so CamVid cars and cyclists count as background), void ignored.
Columns:

- ``IoU raw``: model argmax > 0, no post-processing (mean over photos);
- ``IoU pp``: after post-processing without dilation (max 3 subjects, specks, holes);
- ``IoU full``: the mask the encoder gets (post-processing with the edge dilation);
- ``cover``: fraction of the true subject pixels inside that mask (what stays lossless);
- ``pooled``: IoU of the full mask summed over all photos of the source.

Each IoU column is the mean over photos; ``p10`` and ``median`` are those of ``IoU raw``
and ``IoU full``. Photos whose ground truth and prediction are both empty are left out.
``--nosubject DIR``: photos with no person or animal; the table gives the fraction of the
frame the full mask claims (median, 90th percentile, largest).
Time: median wall time of ``seg(image)`` (load to mask) on the 512-px val photos with
``--threads`` torch threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .postprocess import postprocess

SOURCE_NAMES = {0: "background", 1: "person", 2: "car", 3: "bicyclist", 4: "cat"}


def _iou(pred, gt, valid):
    inter = int((pred & gt & valid).sum())
    union = int(((pred | gt) & valid).sum())
    return inter, union


def _row(r: dict, pooled: float) -> dict:
    """Means of the IoU lists of one source, p10 and median of raw and full."""
    row = {k: float(np.mean(r[k])) if r[k] else float("nan") for k in ("raw", "pp", "full", "cover")}
    for k in ("raw", "full"):
        row[f"{k}_p10"] = float(np.percentile(r[k], 10)) if r[k] else float("nan")
        row[f"{k}_median"] = float(np.median(r[k])) if r[k] else float("nan")
    row["pooled"] = pooled
    row["n"] = len(r["raw"])
    return row


def _claimed(seg, folder: Path) -> dict[str, float]:
    """{photo name: fraction of the frame in the full mask} for the photos in ``folder``."""
    out = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"):
            with Image.open(path) as im:
                out[path.name] = float(np.mean(np.asarray(seg(im.convert("RGB"))) > 0))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="segmenter (default: the shipped model)")
    p.add_argument("--data", default="/work/shared/data/segmentation")
    p.add_argument("--split", default="val")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--time-n", type=int, default=30, help="photos to time")
    p.add_argument("--limit", type=int, default=0, help="evaluate at most this many photos per source")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--input-size", type=int, default=None,
                   help="inference long side (default: the model's own)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="average with the mirror image (default: the model's own setting)")
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                   help="guided-filter edge at full resolution (default: the model's own setting)")
    p.add_argument("--nosubject", default=None, help="a folder of photos with no person or animal")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    torch.set_num_threads(args.threads)
    from .base import WEIGHTS_DIR, load_segmenter

    options = {"input_size": args.input_size} if args.input_size else {}
    for key in ("flip", "refine"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    seg = load_segmenter(args.model, device="cpu", **options)
    names = seg.class_names
    known = {n for i, n in names.items() if i != 0}
    subj_src = np.zeros(256, bool)
    for sid, n in SOURCE_NAMES.items():
        if n in known or (known == {"subject"} and sid != 0):
            subj_src[sid] = True
    if not subj_src.any():
        raise SystemExit(f"evaluate: the model's classes {names} name none of the data's "
                         f"({sorted(set(SOURCE_NAMES.values()) - {'background'})}); give it a segmenter.json with class_names")
    data = Path(args.data)
    ids = (data / "splits" / f"{args.split}.txt").read_text().split()
    per = {}
    counts = {}
    for i in ids:
        src = i.split("_")[0].split("-")[0]
        counts[src] = counts.get(src, 0) + 1
        if args.limit and counts[src] > args.limit:
            continue
        im = Image.open(data / "images" / f"{i}.jpg").convert("RGB")
        cls = np.asarray(Image.open(data / "masks_class" / f"{i}.png"))
        valid = cls != 255
        gt = subj_src[cls] & valid
        raw = seg.predict(im)
        names_ = seg.class_names
        pp0 = postprocess(raw, names_, **{**seg.pp, "dilate": 0}) > 0
        full = np.asarray(seg.finish(raw).mask) > 0
        r = per.setdefault(src, {"raw": [], "pp": [], "full": [], "cover": [], "I": 0, "U": 0})
        for key, pred in (("raw", raw > 0), ("pp", pp0), ("full", full)):
            inter, union = _iou(pred, gt, valid)
            if union:
                r[key].append(inter / union)
            if key == "full":
                r["I"] += inter
                r["U"] += union
        if gt.any():
            r["cover"].append(float((full & gt).sum()) / float(gt.sum()))

    rows = {}
    allv = {"raw": [], "pp": [], "full": [], "cover": []}
    for src, r in sorted(per.items()):
        rows[src] = _row(r, r["I"] / r["U"] if r["U"] else float("nan"))
        if src != "camvid":
            for k in allv:
                allv[k] += r[k]
    rows["all but camvid"] = _row(allv, float("nan"))
    claimed = _claimed(seg, Path(args.nosubject)) if args.nosubject else None

    # timing on 512-px photos
    timed = []
    for i in ids:
        if len(timed) >= args.time_n:
            break
        im = Image.open(data / "images" / f"{i}.jpg")
        if max(im.size) == 512:
            timed.append(im.convert("RGB"))
    for im in timed[:3]:
        seg(im)
    ts, cpu = [], []
    for im in timed:
        t, c = time.perf_counter(), time.process_time()
        seg(im)
        ts.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    tpred = []
    for im in timed:
        t = time.perf_counter()
        seg.predict(im)
        tpred.append((time.perf_counter() - t) * 1000)
    model = getattr(seg, "model", None)
    nparams = sum(p.numel() for p in model.parameters()) if model is not None else 0
    wdir = Path(args.model) if args.model else WEIGHTS_DIR
    size = sum(f.stat().st_size for f in wdir.rglob("*") if f.is_file()) if wdir.is_dir() else (
        wdir.stat().st_size if wdir.exists() else 0)

    print(f"model: {args.model or 'default (' + str(WEIGHTS_DIR) + ')'}; classes {names}")
    print(f"params {nparams / 1e6:.2f} M; weights on disk {size / 1e6:.2f} MB; input long side "
          f"{getattr(seg, 'input_size', '?')}")
    print()
    print("| source | photos | IoU raw | p10 | median | IoU pp | IoU full | p10 | median | cover | pooled IoU full |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for src, r in rows.items():
        print(f"| {src} | {r['n']} | {r['raw']:.3f} | {r['raw_p10']:.3f} | {r['raw_median']:.3f} | {r['pp']:.3f} | "
              f"{r['full']:.3f} | {r['full_p10']:.3f} | {r['full_median']:.3f} | {r['cover']:.3f} | {r['pooled']:.3f} |")
    print()
    if claimed:
        fractions = sorted(claimed.values())
        print(f"no-subject photos ({len(fractions)}, {args.nosubject}): frame claimed median "
              f"{100 * np.median(fractions):.2f}%, p90 {100 * np.percentile(fractions, 90):.2f}%, "
              f"max {100 * fractions[-1]:.2f}%; <= 5% on {sum(f <= 0.05 for f in fractions)} of {len(fractions)}")
        for name, f in sorted(claimed.items(), key=lambda item: -item[1])[:5]:
            print(f"  {name}: {100 * f:.2f}%")
        print()
    print(f"CPU time per 512-px photo ({args.threads} threads, {len(ts)} photos): median "
          f"{statistics.median(ts):.0f} ms full pipeline (model only {statistics.median(tpred):.0f} ms "
          f"incl. resize + upsampling), p90 {sorted(ts)[int(0.9 * (len(ts) - 1))]:.0f} ms; "
          f"CPU seconds of all threads: median {statistics.median(cpu):.0f} ms (with --threads 1 on a "
          f"busy machine, the bound for an idle one)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "nosubject": claimed, "ms_median": statistics.median(ts), "cpu_ms_median": statistics.median(cpu),
                                               "ms_predict": statistics.median(tpred),
                                               "params": nparams, "bytes": size}, indent=2))


if __name__ == "__main__":
    main()
