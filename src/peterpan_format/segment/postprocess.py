"""Post-processing of a segmentation class map (NumPy only, no torch).

Rules (as in the original Peter Pan work), applied by :func:`postprocess`:

1. **Components.** The subject pixels (class id > 0) are split into 8-connected
   components. Each component gets the class that covers most of its pixels
   (ties: the higher-priority class).
2. **Specks.** Components smaller than ``min_area_frac`` of the image (default
   0.1 %, i.e. 262 px of a 512x512 photo) or ``min_area_px`` pixels are dropped.
3. **Priority.** At most ``max_subjects`` components (default 3) are kept, ordered
   by class priority (:data:`PRIORITY`: person > cat = dog > car > bicycle, unknown
   names last), then by area (largest first).
4. **Holes.** Background regions enclosed by a kept component (4-connected regions
   of non-subject pixels that do not touch the image border) become part of it.
5. **Dilation.** Every kept component grows by a Euclidean disc of ``dilate``
   pixels (default 3) so that the subject's true border lies inside the lossless
   region; where two components' growth meets, the higher-priority one wins.

The result is a class map (uint8, 0 = background) in which every pixel of a kept
component carries that component's class id.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: Priority rank of subject class names (lower = kept first).
PRIORITY: dict[str, int] = {
    "person": 0,
    "subject": 0,
    "cat": 1,
    "dog": 1,
    "car": 2,
    "bicyclist": 3,
    "bicycle": 3,
}
UNKNOWN_RANK = 100


def _rank(cls: int, class_names: Mapping[int, str] | None, priority: Mapping[str, int]) -> int:
    if class_names is None:
        return UNKNOWN_RANK
    name = class_names.get(int(cls))
    if name is None:
        return UNKNOWN_RANK
    return priority.get(str(name).lower(), UNKNOWN_RANK)


def postprocess(
    class_map,
    class_names: Mapping[int, str] | None = None,
    *,
    max_subjects: int = 3,
    min_area_frac: float = 0.001,
    min_area_px: int = 16,
    fill_holes: bool = True,
    dilate: int = 3,
    priority: Mapping[str, int] = PRIORITY,
) -> np.ndarray:
    """Clean a class map (H x W ints, 0 = background) and return a uint8 class map.

    ``class_map`` may also be a boolean or 0/255 mask (every non-zero value is a
    subject class; a 0/255 mask gives class 255). ``class_names`` maps class ids to
    names for the priority order; without it all classes rank equally (by area).
    ``max_subjects=None`` or ``0`` keeps every component that is not a speck.
    """
    from .._kernels.components import dilate_labels, label

    cm = np.asarray(class_map)
    if cm.ndim != 2:
        raise ValueError(f"class_map must be 2-D, not {cm.shape}")
    if cm.dtype == np.bool_:
        cm = cm.astype(np.uint8)
    if cm.size and (cm.min() < 0 or cm.max() > 255):
        raise ValueError("class ids must be in 0..255")
    cm = cm.astype(np.uint8, copy=False)
    h, w = cm.shape
    out = np.zeros((h, w), np.uint8)
    if not cm.any():
        return out

    labels, n = label(cm, 8)
    flat_lab = labels.ravel()
    areas = np.bincount(flat_lab, minlength=n + 1)
    areas[0] = 0
    min_area = max(int(min_area_px), int(np.ceil(min_area_frac * h * w)))
    big = np.nonzero(areas >= min_area)[0]
    comps = []
    if len(big):
        # class histogram of the non-speck components only
        remap = np.full(n + 1, -1, np.int64)
        remap[big] = np.arange(len(big))
        sel = remap[flat_lab]
        ok = sel >= 0
        hist = np.bincount(sel[ok] * 256 + cm.ravel()[ok], minlength=len(big) * 256).reshape(len(big), 256)
        for j, c in enumerate(big):
            counts = hist[j]
            best = int(counts.max())
            cands = np.nonzero(counts == best)[0]
            cls = min(cands, key=lambda k: (_rank(k, class_names, priority), k))
            comps.append((_rank(cls, class_names, priority), -int(areas[c]), int(c), int(cls)))
    comps.sort()
    if max_subjects:
        comps = comps[: int(max_subjects)]
    if not comps:
        return out

    # kept components relabelled 1..k in priority order
    k_labels = np.zeros(n + 1, np.int32)
    classes = np.zeros(len(comps) + 1, np.uint8)
    for i, (_, _, c, cls) in enumerate(comps, start=1):
        k_labels[c] = i
        classes[i] = cls
    kept = k_labels[labels]

    if fill_holes:
        bg_lab, nb = label(kept == 0, 4)
        if nb:
            border = np.unique(np.concatenate([bg_lab[0], bg_lab[-1], bg_lab[:, 0], bg_lab[:, -1]]))
            is_hole = np.ones(nb + 1, bool)
            is_hole[border] = False
            is_hole[0] = False
            holes = is_hole[bg_lab]
            if holes.any():
                # each hole takes the label of the kept component that encloses it (a hole
                # borders one component only: two 8-connected components never touch). The
                # pixel left of a hole's leftmost pixel in a row belongs to that component.
                ys, xs = np.nonzero(holes)
                xl = np.maximum(xs - 1, 0)
                first = (xs > 0) & ~holes[ys, xl]
                owner = np.zeros(nb + 1, np.int32)
                owner[bg_lab[ys[first], xs[first]]] = kept[ys[first], xl[first]]
                grown = kept.copy()
                grown[holes] = owner[bg_lab[holes]]
                kept = grown

    if dilate and dilate > 0:
        kept = dilate_labels(kept, int(dilate))
    out = classes[kept]
    return out


def mask_from_class_map(class_map) -> np.ndarray:
    """0/255 uint8 mask of the subject pixels of a class map."""
    return np.where(np.asarray(class_map) > 0, 255, 0).astype(np.uint8)
