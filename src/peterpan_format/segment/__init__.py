"""Subject segmentation for peterpan-format (optional extra ``segment``).

Importing this package never imports torch; torch is imported only when a
model is actually loaded (``load_segmenter``).  See docs/SEGMENTATION.md.
"""

from .base import (
    DEFAULT_CLASS_NAMES,
    Segmentation,
    CallableSegmenter,
    ModelSegmenter,
    Segmenter,
    load_segmenter,
)
from .postprocess import PRIORITY, postprocess

__all__ = [
    "DEFAULT_CLASS_NAMES",
    "PRIORITY",
    "Segmentation",
    "Segmenter",
    "CallableSegmenter",
    "ModelSegmenter",
    "load_segmenter",
    "postprocess",
]
