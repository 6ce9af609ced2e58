"""Segmenter API of peterpan-format.

``load_segmenter(name_or_path=None, device="auto")`` returns a :class:`Segmenter`:
``seg(image) -> PIL.Image`` (mode ``L``, the image's size, 255 = subject to keep
lossless, 0 = background) and ``seg.segment(image) -> Segmentation`` (mask, class
map, class names).  torch is imported only when a model is loaded.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
from PIL import Image

from .refine import guided_subject

INSTALL_HINT = 'pip install "peterpan-format[segment]"'
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_CLASS_NAMES: dict[int, str] = {0: "background", 1: "person", 2: "cat"}
DEFAULT_INPUT_SIZE = 320
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Segmentation(NamedTuple):
    """Result of :meth:`Segmenter.segment`."""

    #: mode ``L``, the image's size; 255 = subject (kept bit-exact), 0 = background
    mask: Image.Image
    #: mode ``L`` class ids after post-processing (0 = background), or None if unknown
    class_map: Image.Image | None
    #: class id -> name (0 = "background"); empty if unknown
    class_names: dict[int, str]


class Segmenter:
    """Base class: subclasses implement :meth:`segment`; calling returns the mask."""

    class_names: dict[int, str] = {}

    def segment(self, image: Image.Image) -> Segmentation:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, image: Image.Image) -> Image.Image:
        return self.segment(image).mask


def _require_torch():
    try:
        import torch  # noqa: F401
        import segmentation_models_pytorch  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"peterpan-format segmentation models need torch and segmentation-models-pytorch: "
            f"{INSTALL_HINT} ({exc})"
        ) from exc
    import torch

    return torch


def _pick_device(device):
    torch = _require_torch()
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


# --------------------------------------------------------------------------- masks


def _to_mask_array(out: Any, size: tuple[int, int]) -> np.ndarray:
    """Normalise a callable's output to a bool array of shape (h, w); ValueError on a wrong size.

    Accepted: a PIL image (``RGBA``/``LA``/``PA``: the alpha channel; ``1``; any other mode
    converted to ``L``), a NumPy array or torch tensor (squeezed to 2-D). Thresholds: bool as is;
    floats >= 0.5; integers: > 0 when the maximum is 1 (0/1 masks), else >= 128 (0/255 masks
    and 8-bit mattes).
    """
    w, h = size
    if isinstance(out, Segmentation):
        out = out.mask
    if isinstance(out, Image.Image):
        if out.size != (w, h):
            raise ValueError(f"segmenter returned a {out.size[0]}x{out.size[1]} mask for a {w}x{h} image")
        if out.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
            out = out.getchannel("A")
        elif out.mode == "1":
            return np.asarray(out, dtype=bool)
        elif out.mode not in ("L", "I", "F", "I;16"):
            out = out.convert("L")
        arr = np.asarray(out)
    else:
        if hasattr(out, "detach"):  # torch tensor
            out = out.detach().cpu().numpy()
        arr = np.asarray(out)
        arr = np.squeeze(arr)
        if arr.ndim != 2 or arr.shape != (h, w):
            raise ValueError(
                f"segmenter returned an array of shape {np.shape(out)} for a {w}x{h} image "
                f"(expected ({h}, {w}))"
            )
    if arr.dtype == np.bool_:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        return arr >= 0.5
    if arr.size and arr.max() <= 1:
        return arr > 0
    return arr >= 128


def _mask_image(mask: np.ndarray) -> Image.Image:
    return Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), "L")


class CallableSegmenter(Segmenter):
    """Wraps ``fn(image) -> mask`` (PIL image, array or tensor) into a :class:`Segmenter`.

    The output is normalised to an ``L`` 0/255 mask (see ``_to_mask_array``); a mask of
    the wrong size raises ``ValueError``. No post-processing unless ``postprocess=True``.
    """

    def __init__(self, fn: Callable, postprocess: bool = False, **pp_options):
        self.fn = fn
        self.postprocess = postprocess
        self.pp_options = pp_options
        self.class_names = {}

    def segment(self, image: Image.Image) -> Segmentation:
        m = _to_mask_array(self.fn(image), image.size)
        if self.postprocess:
            from .postprocess import postprocess

            m = postprocess(m, None, **self.pp_options) > 0
        return Segmentation(_mask_image(m), None, {})

    def __repr__(self):
        return f"CallableSegmenter({self.fn!r})"


# --------------------------------------------------------------------------- models


class ModelSegmenter(Segmenter):
    """A torch segmentation model (smp or any ``nn.Module`` returning N x C x H x W logits).

    The image is converted to RGB, resized so that its long side is ``input_size``
    (default 320), normalised with ``mean``/``std`` (ImageNet), padded to a multiple of 32
    and run once (with ``flip``, on the image and its mirror, logits averaged); the logits
    are upsampled (bilinear) to the image size. C = 1: sigmoid
    >= 0.5 is class 1; C > 1: argmax, class 0 = background. Then
    :func:`~peterpan_format.segment.postprocess.postprocess` (max 3 subjects by priority,
    specks dropped, holes filled, edge dilated by ``dilate`` px + 1 px per full-resolution
    pixel covered by one model pixel beyond the first; see docs/SEGMENTATION.md).
    """

    def __init__(
        self,
        model,
        class_names: dict[int, str] | None = None,
        *,
        device="auto",
        input_size: int = DEFAULT_INPUT_SIZE,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        max_subjects: int = 3,
        min_area_frac: float = 0.001,
        fill_holes: bool = True,
        dilate: int = 3,
        scale_dilate: bool = True,
        channels_last: bool = True,
        flip: bool = False,
        refine: bool = False,
    ):
        torch = _require_torch()
        self.device = _pick_device(device)
        self.model = model.float().eval().to(self.device)
        # NHWC is ~25 % faster for this kind of model on CPU (docs/SEGMENTATION.md)
        self.channels_last = bool(channels_last) and self.device.type == "cpu"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.class_names = dict(class_names) if class_names else {}
        self.input_size = int(input_size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1).to(self.device)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1).to(self.device)
        self.pp = dict(max_subjects=max_subjects, min_area_frac=min_area_frac,
                       fill_holes=fill_holes, dilate=dilate)
        self.scale_dilate = scale_dilate
        self.flip = bool(flip)
        self.refine = bool(refine)

    def predict(self, image: Image.Image) -> np.ndarray:
        """Raw class map (uint8, image size) before post-processing."""
        import torch
        import torch.nn.functional as F

        w, h = image.size
        rgb = image if image.mode == "RGB" else _to_rgb(image)
        s = self.input_size / max(w, h)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        small = rgb.resize((nw, nh), Image.BILINEAR, reducing_gap=3.0) if (nw, nh) != (w, h) else rgb
        with torch.inference_mode():
            x = torch.from_numpy(np.asarray(small, dtype=np.uint8).copy()).to(self.device)
            x = x.permute(2, 0, 1)[None].float().div_(255)
            x = (x - self.mean) / self.std
            ph, pw = (-nh) % 32, (-nw) % 32
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph), mode="replicate")
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if self.flip:  # the mirror image too, in the same batch; logits averaged
                x = torch.cat([x, x.flip(3)])
            logits = self.model(x)
            if isinstance(logits, (tuple, list)):
                logits = logits[0]
            if self.flip:
                logits = (logits[:1] + logits[1:].flip(3)) / 2
            logits = logits[:, :, :nh, :nw].float()
            subject = guided_subject(logits[0], small, rgb) if self.refine and (nh, nw) != (h, w) else None
            if (nh, nw) != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            if logits.shape[1] == 1:
                cm = logits[0, 0] >= 0 if subject is None else subject
            elif subject is None:
                cm = logits[0].argmax(0)
            else:  # the likeliest subject class wherever the refined edge says subject
                cm = torch.where(subject, logits[0, 1:].argmax(0) + 1, 0)
        return cm.to(torch.uint8).cpu().numpy()

    def segment(self, image: Image.Image) -> Segmentation:
        return self.finish(self.predict(image))

    def finish(self, raw: np.ndarray) -> Segmentation:
        """Post-process a raw class map from :meth:`predict` into a :class:`Segmentation`."""
        from .postprocess import mask_from_class_map, postprocess

        names = self.class_names or ({0: "background", 1: "subject"} if raw.max() <= 1 else {})
        pp = dict(self.pp)
        if self.scale_dilate and pp["dilate"]:
            # one model pixel covers long/input_size image pixels: its edge is that uncertain
            extra = int(np.ceil(max(raw.shape) / self.input_size)) - 1
            pp["dilate"] = pp["dilate"] + max(0, extra)
        cm = postprocess(raw, names, **pp)
        return Segmentation(Image.fromarray(mask_from_class_map(cm), "L"),
                            Image.fromarray(cm, "L"), dict(names))

    def __repr__(self):
        return (f"ModelSegmenter({type(self.model).__name__}, classes={self.class_names}, "
                f"input_size={self.input_size}, device={self.device})")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(image, dtype=np.float64)
        hi = a.max() if a.size else 1
        a = np.clip(a * (255.0 / hi if hi > 255 else 1.0), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if image.mode == "F":
        a = np.asarray(image, dtype=np.float64)
        lo, hi = (a.min(), a.max()) if a.size else (0, 1)
        a = ((a - lo) / (hi - lo if hi > lo else 1) * 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "P"):
        return image.convert("RGBA").convert("RGB")
    return image.convert("RGB")


def _names_from_meta(meta: dict | None, classes: int | None) -> dict[int, str]:
    if meta and meta.get("class_names"):
        return {int(k): str(v) for k, v in meta["class_names"].items()}
    if classes == 1:
        return {0: "background", 1: "subject"}
    if classes:
        return {0: "background", **{i: f"class_{i}" for i in range(1, classes)}}
    return {}


def _load_pretrained_dir(path: Path, device, options):
    import json

    _require_torch()
    import segmentation_models_pytorch as smp

    with contextlib.redirect_stdout(io.StringIO()):  # smp prints "Loading weights from local directory"
        model = smp.from_pretrained(str(path))
    meta = {}
    if (path / "segmenter.json").is_file():
        meta = json.loads((path / "segmenter.json").read_text())
    return _from_meta(model, meta, getattr(model, "segmentation_head", None), device, options)


def _from_meta(model, meta, head, device, options):
    classes = meta.get("classes")
    if classes is None:
        conv = head[0] if head is not None else None
        classes = getattr(conv, "out_channels", None)
    kw = dict(input_size=meta.get("input_size", DEFAULT_INPUT_SIZE), flip=bool(meta.get("flip", False)),
              refine=bool(meta.get("refine", False)),
              mean=tuple(meta.get("mean", IMAGENET_MEAN)), std=tuple(meta.get("std", IMAGENET_STD)))
    kw.update(options)
    return ModelSegmenter(model, _names_from_meta(meta, classes), device=device, **kw)


def _load_state_dict_file(path: Path, device, options):
    """A ``.pt``/``.pth`` file written by ``torch.save`` of a dict with keys ``arch`` (smp
    architecture name, e.g. "Unet"), ``encoder`` (smp encoder name), ``classes`` (int),
    ``state_dict``; optional ``class_names`` ({id: name}), ``model_kwargs`` (extra
    ``smp.create_model`` arguments), ``input_size``, ``mean``, ``std``, ``flip``."""
    torch = _require_torch()
    import segmentation_models_pytorch as smp

    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(
            f"{path}: expected a dict with keys 'arch', 'encoder', 'classes', 'state_dict' "
            "(see docs/SEGMENTATION.md)"
        )
    missing = [k for k in ("arch", "encoder", "classes") if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks the architecture keys {missing}")
    model = smp.create_model(ckpt["arch"], encoder_name=ckpt["encoder"], encoder_weights=None,
                             classes=int(ckpt["classes"]), **dict(ckpt.get("model_kwargs") or {}))
    sd = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(sd)
    meta = {k: ckpt[k] for k in ("classes", "class_names", "input_size", "mean", "std", "flip") if k in ckpt}
    return _from_meta(model, meta, None, device, options)


@functools.lru_cache(maxsize=4)
def _default_segmenter(device, options: tuple):
    if not (WEIGHTS_DIR / "config.json").is_file():
        raise FileNotFoundError(f"the default segmentation weights are missing from {WEIGHTS_DIR}")
    return _load_pretrained_dir(WEIGHTS_DIR, device, dict(options))


def load_segmenter(name_or_path=None, device="auto", **options) -> Segmenter:
    """Return a :class:`Segmenter` (``seg(image) -> L mask``, ``seg.segment(image)``).

    ``name_or_path``:

    - ``None``: the default model shipped in ``peterpan_format/segment/weights``
      (background / person / cat), loaded without network; cached per device.
    - a :class:`Segmenter`: returned as is.
    - a directory written by smp's ``save_pretrained`` (``config.json`` +
      ``model.safetensors``; an optional ``segmenter.json`` gives ``class_names``,
      ``input_size``, ``mean``, ``std``).
    - a ``.pt``/``.pth`` file: ``torch.save({"arch", "encoder", "classes", "state_dict",
      ...})`` (see ``_load_state_dict_file``).
    - any other string: an smp / Hugging Face hub id (``smp.from_pretrained``; needs
      network, unless cached). Failure raises ``RuntimeError``.
    - a ``torch.nn.Module``: used as the model (logits N x C x H x W).
    - any other callable ``fn(image) -> mask``: wrapped, output normalised to an ``L``
      0/255 mask; a mask of the wrong size raises ``ValueError``.

    ``options`` go to :class:`ModelSegmenter` (``input_size``, ``max_subjects``,
    ``min_area_frac``, ``fill_holes``, ``dilate``, ``scale_dilate``, ``channels_last``, ``flip``) or, for callables,
    to :class:`CallableSegmenter` (``postprocess=True`` and post-processing options).
    """
    if isinstance(name_or_path, Segmenter):
        return name_or_path
    if name_or_path is None:
        dev = str(_pick_device(device))
        return _default_segmenter(dev, tuple(sorted(options.items())))
    if isinstance(name_or_path, (str, os.PathLike)):
        path = Path(os.fspath(name_or_path)).expanduser()
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise FileNotFoundError(f"{path}: not an smp save_pretrained directory (no config.json)")
            return _load_pretrained_dir(path, device, options)
        if path.is_file():
            if path.suffix.lower() in (".pt", ".pth", ".ckpt"):
                return _load_state_dict_file(path, device, options)
            raise ValueError(f"{path}: unsupported segmenter file (expected a .pt/.pth state dict "
                             "or a save_pretrained directory)")
        s = os.fspath(name_or_path)
        if isinstance(name_or_path, os.PathLike) or s.startswith((".", "/", "~")) or s.count("/") != 1:
            raise FileNotFoundError(f"segmenter not found: {s}")
        _require_torch()
        import segmentation_models_pytorch as smp

        try:
            model = smp.from_pretrained(s)
        except Exception as exc:
            raise RuntimeError(
                f"could not load the segmenter {s!r} from the Hugging Face hub "
                f"(no network, HF_HUB_OFFLINE=1, or no such model?): {exc}"
            ) from exc
        return _from_meta(model, {}, getattr(model, "segmentation_head", None), device, options)
    torch = sys.modules.get("torch")  # an nn.Module implies torch is already imported
    if torch is not None and isinstance(name_or_path, torch.nn.Module):
        return _from_meta(name_or_path, {}, getattr(name_or_path, "segmentation_head", None),
                          device, options)
    if callable(name_or_path):
        return CallableSegmenter(name_or_path, **options)
    raise TypeError(f"cannot make a segmenter from {type(name_or_path).__name__}")
