"""The subject's edge at the photo's own resolution: a fast guided filter.

The model sees the photo at ``input_size``; bilinearly upsampled, its subject probability
is a soft blob that knows the edge to about one model pixel. A guided filter (He, Sun and
Tang; the fast form of He and Sun 2015) fits, in every window of the model's grid, the
probability as a linear function of the photo's brightness, and applies those smooth
coefficients to the full-resolution brightness, so the 0.5 level follows the photo's own
edges. Torch only, linear in the pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: window radius on the model's grid and regularisation (brightness in 0..1)
RADIUS = 2
EPS = 1e-3


def guided_subject(logits, small: Image.Image, full: Image.Image, radius: int = RADIUS, eps: float = EPS):
    """Bool tensor (h, w) of subject pixels at ``full``'s size from model ``logits`` (C, nh, nw)
    computed on ``small`` (the photo resized to nw x nh); class 0 is the background."""
    import torch
    import torch.nn.functional as F

    def box(x):
        return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)

    if logits.shape[0] == 1:
        p = torch.sigmoid(logits[0])
    else:
        p = 1 - torch.softmax(logits, 0)[0]
    guide = _brightness(small).to(p.device)[None, None]
    p = p[None, None]
    mean_i, mean_p = box(guide), box(p)
    var_i = box(guide * guide) - mean_i * mean_i
    a = (box(guide * p) - mean_i * mean_p) / (var_i + eps)
    b = mean_p - a * mean_i
    size = (full.height, full.width)
    a = F.interpolate(box(a), size=size, mode="bilinear", align_corners=False)[0, 0]
    b = F.interpolate(box(b), size=size, mode="bilinear", align_corners=False)[0, 0]
    return a * _brightness(full).to(p.device) + b >= 0.5


def _brightness(image: Image.Image):
    """Luma in 0..1 as a float tensor (h, w)."""
    import torch

    return torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32) / 255)
