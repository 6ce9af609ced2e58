"""Train the default subject-segmentation model of peterpan-format.

    python -m peterpan_format.segment.train --out runs/seg --minutes 60

Trains an smp ``Unet`` with a ``tu-mobilenetv3_small_100`` encoder **from
scratch** (``encoder_weights=None``: nothing is downloaded) on
``/work/shared/data/segmentation`` (or ``--data``), multi-class softmax output
(background, person, cat by default), loss = cross-entropy + multiclass Dice,
void (255) ignored.  Uses CUDA when available, else the CPU.

Data loading is made cheap for small CPUs: every image is decoded once,
resized to ``--store`` px on the long side and kept in memory (cached to
``<out>/cache_<store>.pkl``); augmentation (random scale and crop, flip,
colour jitter, grey, blur, noise, and compositing the subjects of one image
onto the background of another) runs on tensors in the main process.

Stopping is time based (``--minutes``); the learning rate follows a cosine
over that time budget.  The model is validated every ``--val-every`` minutes
on the val split (subject IoU = union of all subject classes vs ``masks/``)
and the best one is saved to ``<out>/best`` (smp ``save_pretrained`` + segmenter.json),
``<out>/best.pt`` (state-dict format accepted by ``load_segmenter``) and
``<out>/best.json`` (metrics).  ``--export DIR`` writes the best model as fp16
in the package format (config.json, model.safetensors, segmenter.json).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import random
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

# source class ids (masks_class) -> name
SOURCE_CLASSES = {0: "background", 1: "person", 2: "car", 3: "bicyclist", 4: "cat"}
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
DEFAULT_DATA = "/work/shared/data/segmentation"


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def build_class_map(include_camvid: bool):
    """Return (lut 256 -> model class id, class_names)."""
    names = ["background", "person"] + (["car", "bicyclist"] if include_camvid else []) + ["cat"]
    lut = np.full(256, 255, np.uint8)
    lut[0] = 0
    for src, name in SOURCE_CLASSES.items():
        if name in names:
            lut[src] = names.index(name)
        elif src != 0:
            lut[src] = 0
    return lut, {i: n for i, n in enumerate(names)}


def load_split(data: Path, split: str, store: int, lut, include_camvid: bool, cache: Path | None):
    ids = [s.strip() for s in (data / "splits" / f"{split}.txt").read_text().split() if s.strip()]
    if not include_camvid:
        ids = [i for i in ids if not i.startswith("camvid_")]
    key = f"{split}_{store}_{'cv' if include_camvid else 'nocv'}"
    if cache is not None and cache.exists():
        with open(cache, "rb") as f:
            d = pickle.load(f)
        if key in d:
            return d[key]
    out = []
    for i in ids:
        im = Image.open(data / "images" / f"{i}.jpg").convert("RGB")
        cl = Image.open(data / "masks_class" / f"{i}.png")
        w, h = im.size
        s = store / max(w, h)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        im = im.resize((nw, nh), Image.LANCZOS)
        cl = cl.resize((nw, nh), Image.NEAREST)
        out.append((i, np.asarray(im, np.uint8).copy(), lut[np.asarray(cl)]))
    if cache is not None:
        d = {}
        if cache.exists():
            with open(cache, "rb") as f:
                d = pickle.load(f)
        d[key] = out
        with open(cache, "wb") as f:
            pickle.dump(d, f, protocol=4)
    return out


class Augmenter:
    def __init__(self, items, crop: int, composite_p: float = 0.3, weights=None):
        import torch

        self.torch = torch
        self.items = items
        self.crop = crop
        self.composite_p = composite_p
        self.weights = weights

    def _sample(self):
        torch = self.torch
        import torch.nn.functional as F

        _, im, lab = random.choices(self.items, weights=self.weights)[0]
        img = torch.from_numpy(im).permute(2, 0, 1).float().div_(255)
        lab = torch.from_numpy(lab)
        h, w = lab.shape
        s = math.exp(random.uniform(math.log(0.55), math.log(1.35)))
        ar = math.exp(random.uniform(-0.15, 0.15))
        nh, nw = max(8, round(h * s * ar)), max(8, round(w * s / ar))
        img = F.interpolate(img[None], (nh, nw), mode="bilinear", align_corners=False,
                            antialias=s < 1)[0]
        lab = F.interpolate(lab[None, None].float(), (nh, nw), mode="nearest")[0, 0].to(torch.uint8)
        c = self.crop
        ph, pw = max(0, c - nh), max(0, c - nw)
        if ph or pw:
            top, left = random.randint(0, ph), random.randint(0, pw)
            img2 = torch.zeros(3, nh + ph, nw + pw)
            img2[:] = torch.rand(3, 1, 1)
            img2[:, top:top + nh, left:left + nw] = img
            lab2 = torch.full((nh + ph, nw + pw), 255, dtype=torch.uint8)
            lab2[top:top + nh, left:left + nw] = lab
            img, lab = img2, lab2
            nh, nw = lab.shape
        y, x = random.randint(0, nh - c), random.randint(0, nw - c)
        img, lab = img[:, y:y + c, x:x + c], lab[y:y + c, x:x + c]
        if random.random() < 0.5:
            img, lab = img.flip(-1), lab.flip(-1)
        return img.contiguous(), lab.contiguous()

    def batch(self, n: int):
        torch = self.torch
        import torchvision.transforms.v2.functional as TF

        imgs, labs = [], []
        for _ in range(n):
            img, lab = self._sample()
            if random.random() < self.composite_p:
                bimg, blab = self._sample()
                fg = ((lab > 0) & (lab != 255))
                if fg.any():
                    a = fg.float()[None, None]
                    a = TF.gaussian_blur(a, [3, 3], [0.7, 0.7])[0]
                    img = a * img + (1 - a) * bimg
                    lab = torch.where(fg, lab, blab)
                else:
                    img, lab = bimg, blab
            imgs.append(img)
            labs.append(lab)
        x = torch.stack(imgs)
        y = torch.stack(labs).long()
        # colour jitter (per sample)
        b = x.shape[0]
        bright = torch.empty(b, 1, 1, 1).uniform_(0.65, 1.35)
        contr = torch.empty(b, 1, 1, 1).uniform_(0.65, 1.35)
        sat = torch.empty(b, 1, 1, 1).uniform_(0.5, 1.5)
        x = x * bright
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * contr + mean
        grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        sat = torch.where(torch.rand(b, 1, 1, 1) < 0.05, torch.zeros_like(sat), sat)
        x = (x - grey) * sat + grey
        # per-channel gain (white balance)
        x = x * torch.empty(b, 3, 1, 1).uniform_(0.9, 1.1)
        for i in range(b):
            r = random.random()
            if r < 0.2:
                sg = random.uniform(0.4, 2.0)
                x[i] = TF.gaussian_blur(x[i:i + 1], [7, 7], [sg, sg])[0]
            elif r < 0.35:
                x[i] = x[i] + torch.randn_like(x[i]) * random.uniform(0.01, 0.05)
        x = x.clamp_(0, 1)
        m = torch.tensor(MEAN).view(1, 3, 1, 1)
        s = torch.tensor(STD).view(1, 3, 1, 1)
        return (x - m) / s, y


def pad32(x, mult=32):
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph, pw = (-h) % mult, (-w) % mult
    return F.pad(x, (0, pw, 0, ph)), h, w


def evaluate_items(model, items, device):
    """Subject IoU per item at stored resolution. Returns dict id -> IoU."""
    import torch

    model.eval()
    m = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    s = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    res = {}
    with torch.no_grad():
        for i, im, lab in items:
            x = torch.from_numpy(im).permute(2, 0, 1)[None].float().to(device).div_(255)
            x = (x - m) / s
            xp, h, w = pad32(x)
            pred = model(xp)[0, :, :h, :w].argmax(0).cpu().numpy() > 0
            gt = (lab > 0) & (lab != 255)
            valid = lab != 255
            inter = (pred & gt & valid).sum()
            union = ((pred | gt) & valid).sum()
            res[i] = 1.0 if union == 0 else float(inter) / float(union)
    model.train()
    return res


def summarize(res):
    by = {}
    for i, v in res.items():
        src = i.split("_")[0].split("-")[0]
        by.setdefault(src, []).append(v)
    out = {k: float(np.mean(v)) for k, v in sorted(by.items())}
    out["mean"] = float(np.mean(list(res.values()))) if res else 0.0
    return out


def build_model(arch, encoder, classes, decoder_channels=None):
    import segmentation_models_pytorch as smp

    kw = dict(encoder_name=encoder, encoder_weights=None, classes=classes)
    if decoder_channels:
        kw["decoder_channels"] = tuple(decoder_channels)
    return smp.create_model(arch, **kw)


def export(best_dir: Path, meta: dict, dest: Path):
    """Write the package weights format: config.json + fp16 model.safetensors + segmenter.json."""
    import shutil

    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(best_dir / "config.json", dest / "config.json")
    sd = load_file(str(best_dir / "model.safetensors"))
    sd16 = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
    save_file(sd16, str(dest / "model.safetensors"), metadata={"format": "pt"})
    (dest / "segmenter.json").write_text(json.dumps(meta, indent=2) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--out", default="runs/seg")
    p.add_argument("--arch", default="Unet")
    p.add_argument("--encoder", default="tu-mobilenetv3_small_100")
    p.add_argument("--decoder-channels", type=int, nargs="*", default=None)
    p.add_argument("--include-camvid", action="store_true",
                   help="also train on camvid_ ids (non-commercial licence!) with car/bicyclist classes")
    p.add_argument("--minutes", type=float, default=60.0, help="wall-clock training budget")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = no limit)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--store", type=int, default=320, help="long side of the in-memory images")
    p.add_argument("--input-size", type=int, default=320, help="inference long side recorded in the export")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--wd", type=float, default=1e-4)
    p.add_argument("--val-every", type=float, default=5.0, help="minutes between validations")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hsd-weight", type=float, default=3.0, help="sampling weight of hsd- photos")
    p.add_argument("--export", default=None, help="write the best model (fp16) to this directory at the end")
    p.add_argument("--init", default=None,
                   help="start from this save_pretrained directory (e.g. the shipped weights) to keep training")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    lut, names = build_class_map(args.include_camvid)
    t0 = time.time()
    cache = out / f"cache_{args.store}.pkl"
    train = load_split(data, "train", args.store, lut, args.include_camvid, cache)
    val = load_split(data, "val", args.store, lut, args.include_camvid, cache)
    log(f"data: {len(train)} train, {len(val)} val, classes {names}, loaded in {time.time() - t0:.0f}s, device {device}")
    weights = [args.hsd_weight if i.startswith("hsd-") else 1.0 for i, _, _ in train]
    aug = Augmenter(train, args.crop, weights=weights)

    model = build_model(args.arch, args.encoder, len(names), args.decoder_channels)
    if args.init:
        import segmentation_models_pytorch as smp

        model = smp.from_pretrained(args.init).float()
        log(f"initialised from {args.init}")
    model = model.to(device)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"model {args.arch}/{args.encoder}: {nparams / 1e6:.2f} M params")
    import segmentation_models_pytorch as smp

    ce = torch.nn.CrossEntropyLoss(ignore_index=255)
    dice = smp.losses.DiceLoss("multiclass", ignore_index=255)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd)
    budget = args.minutes * 60.0
    warm = 0.03
    meta = {
        "arch": args.arch,
        "encoder": args.encoder,
        "classes": len(names),
        "class_names": {str(k): v for k, v in names.items()},
        "input_size": args.input_size,
        "flip": True,  # infer on the image and its mirror (docs/SEGMENTATION.md)
        "mean": MEAN,
        "std": STD,
        "trained_on": "ccp, cat, hsd" + (", camvid" if args.include_camvid else ""),
    }
    best, step, seen = -1.0, 0, 0
    tstart = time.time()
    next_val = tstart + args.val_every * 60
    run_loss = None
    model.train()
    while True:
        el = time.time() - tstart
        frac = min(1.0, el / budget)
        lr = args.lr * (frac / warm if frac < warm else 0.5 * (1 + math.cos(math.pi * (frac - warm) / (1 - warm))))
        lr = max(lr, args.lr * 0.01)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = aug.batch(args.batch)
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss = ce(logits, y) + dice(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        seen += x.shape[0]
        run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
        if step % 50 == 0:
            log(f"step {step} seen {seen} ({seen / len(train):.2f} ep) loss {run_loss:.4f} lr {lr:.2e} "
                f"{seen / (time.time() - tstart):.1f} img/s")
        done = el >= budget or (args.max_steps and step >= args.max_steps)
        if time.time() >= next_val or done:
            tv = time.time()
            res = summarize(evaluate_items(model, val, device))
            log(f"val step {step}: " + " ".join(f"{k} {v:.4f}" for k, v in res.items()) + f" ({time.time() - tv:.0f}s)")
            if res["mean"] > best:
                best = res["mean"]
                model.save_pretrained(str(out / "best"))
                (out / "best" / "segmenter.json").write_text(json.dumps(meta, indent=2) + "\n")
                sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
                torch.save({**meta, "state_dict": sd}, out / "best.pt")
                (out / "best.json").write_text(json.dumps(
                    {"step": step, "seen": seen, "epochs": seen / len(train),
                     "minutes": (time.time() - tstart) / 60, "val": res, **meta}, indent=2))
                log(f"saved best {best:.4f}")
            next_val = time.time() + args.val_every * 60
        if done:
            break
    total = time.time() - tstart
    log(f"done: {step} steps, {seen} images ({seen / len(train):.2f} epochs) in {total / 60:.1f} min; best val IoU {best:.4f}")
    info = json.loads((out / "best.json").read_text())
    info.update({"total_steps": step, "total_seen": seen, "total_minutes": total / 60,
                 "device": device, "threads": args.threads, "argv": sys.argv[1:]})
    (out / "best.json").write_text(json.dumps(info, indent=2))
    if args.export:
        meta["training"] = {k: info[k] for k in ("step", "seen", "epochs", "minutes", "total_minutes", "device", "argv", "val")}
        export(out / "best", meta, Path(args.export))
        log(f"exported to {args.export}")


if __name__ == "__main__":
    main()
