"""peterpan-format: the .ppan semantic image format for Pillow.

``import peterpan_format`` registers the format, so ``Image.open("x.ppan")`` and
``img.save("x.ppan", mask=...)`` work. Installing the package also registers it in every
Python program that imports Pillow (a start-up hook; set ``PPAN_NO_AUTOLOAD=1`` to disable).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image

from . import PpanImagePlugin
from .PpanImagePlugin import register
from .options import EncodeOptions

__version__ = "0.1.0"
__all__ = ["EncodeOptions", "register", "save", "__version__"]


def save(image: Image.Image, path: str | os.PathLike, format: str = "PPAN", **params) -> None:
    """Save ``image`` (as .ppan unless ``format`` says otherwise) atomically: the file
    appears complete or not at all, and an existing file is replaced only on success."""
    path = Path(path)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as tmp:
        try:
            image.save(tmp, format=format, **params)
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)
