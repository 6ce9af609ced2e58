"""peterpan-format: the .ppan semantic image format for Pillow.

``import peterpan_format`` registers the format, so ``Image.open("x.ppan")`` and
``img.save("x.ppan", mask=...)`` work. Installing the package also registers it in every
Python program that imports Pillow (a start-up hook; set ``PPAN_NO_AUTOLOAD=1`` to disable).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import IO

from PIL import Image

from .PpanImagePlugin import register  # importing the plugin registers the format
from .options import EncodeOptions

__version__ = "0.2.0"
__all__ = ["EncodeOptions", "from_jpeg", "read_mask", "register", "save", "__version__"]


def save(image: Image.Image, path: str | os.PathLike, format: str = "PPAN", **params) -> None:
    """Save ``image`` (as .ppan unless ``format`` says otherwise) atomically: the file
    appears complete or not at all, an existing file is replaced only on success, and a
    new file gets the usual permissions (0666 less the umask)."""
    from .outputs import write_atomic

    data = io.BytesIO()
    image.save(data, format=format, **params)
    write_atomic(path, data.getvalue())


def read_mask(source: str | os.PathLike | IO[bytes]) -> Image.Image:
    """The subject mask stored in a .ppan file (a path or a binary file object), as a mode
    ``L`` image of the file's size: 255 = subject, 0 = background. Neither the background
    nor the subject is decoded. The mask can be passed back as ``mask=`` when re-saving."""
    with Image.open(source, formats=["PPAN"]) as image:
        return image.read_mask()


def from_jpeg(source: str | os.PathLike | bytes | IO[bytes], mask=None, **options) -> bytes:
    """A .ppan file (bytes) made from a JPEG file (a path, its bytes or a binary file object).

    The subject keeps the JPEG's own quantised DCT coefficients (SUBJ coding 4), so it
    decodes exactly as Pillow decodes the JPEG, for a fraction of the bytes of lossless
    pixels, unless coding the pixels (as the ``subject`` mode says) is smaller or the JPEG
    cannot be kept (spec/FORMAT.md §6.4.7); ``subject="jpeg"`` makes the latter an error.
    ``mask`` and ``options`` are those of ``Image.save``; without a mask the segmenter
    finds the subject. EXIF, ICC and XMP are kept; the mask is in the JPEG's stored
    orientation.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read()
    else:
        data = Path(source).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        if image.format not in ("JPEG", "MPO"):
            raise ValueError(f"from_jpeg needs a JPEG file, not {image.format}")
        if image.mode not in ("L", "RGB"):  # CMYK: its pixels are coded, as RGB
            image = image.convert("RGB")
        out = io.BytesIO()
        image.save(out, format="PPAN", mask=mask, jpeg_source=data, **options)
    return out.getvalue()
