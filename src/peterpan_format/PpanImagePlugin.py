"""Pillow plugin for .ppan files: open, load, draft, verify and save.

Importing this module registers the format, like Pillow's own ``*ImagePlugin`` modules.
``Image.open`` reads only the header and the metadata before the first layer; pixels
are decoded in ``load()`` by :class:`PpanDecoder`, which also serves ``ImageFile.Parser``.
"""

from __future__ import annotations

import mimetypes
from typing import IO

from PIL import Image, ImageFile

from . import container, metadata
from .container import SIGNATURE, ChunkAssembler, Header, LayerCollector

FORMAT = "PPAN"
MIME = "image/x-ppan"
_SAVE_MODES = {"1": "L", "L": "L", "RGB": "RGB", "RGBA": "RGBA"}


def _accept(prefix: bytes) -> bool:
    return prefix.startswith(SIGNATURE)


class PpanImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "Peter Pan semantic image"

    def _open(self) -> None:
        assert self.fp is not None
        try:
            self.header = container.read_head(self.fp)
        except OSError as exc:
            raise SyntaxError(str(exc)) from exc
        pre_layer, offset = {}, self.fp.tell()
        try:
            while not container.is_critical(container.peek_chunk_type(self.fp)):
                chunk_type, data = container.read_chunk(self.fp)
                if chunk_type in container.METADATA_TYPES:
                    pre_layer.setdefault(chunk_type, data)
                offset = self.fp.tell()
        except container.TruncatedFile as exc:
            # Not opened (as Pillow's PNG plugin does; ImageFile.Parser then waits for more
            # data), unless truncated files are allowed: load() then gives a black image.
            if not ImageFile.LOAD_TRUNCATED_IMAGES:
                raise SyntaxError(str(exc)) from exc
        except OSError:
            pass  # a bad chunk after HEAD: load() reports it (spec §1)
        self.fp.seek(offset)
        self._layers_offset = offset
        self.info.update(metadata.unpack(pre_layer))
        self.info["background_scale"] = self.header.scale
        self.info["feather"] = self.header.feather
        self._mode = self.header.mode
        self._size = self.header.size
        self.tile = [ImageFile._Tile("ppan", (0, 0, *self.size), self.fp.tell(), (self.header,))]

    def draft(self, mode: str | None, size: tuple[int, int] | None):
        """Decode only the stored background (1/scale of the size) when it is at least as
        large as the image fitted into ``size`` with its aspect ratio kept: what
        ``thumbnail(size)`` needs. (Pillow's JPEG plugin asks each side to reach ``size``.)"""
        scale = self.header.scale
        if not size or scale == 1 or self.decoderconfig or len(self.tile) != 1:
            return None
        if self.size[0] < scale * size[0] and self.size[1] < scale * size[1]:
            return None
        original = self.size
        self._size = self.header.background_size
        self.tile = [self.tile[0]._replace(extents=(0, 0, *self.size))]
        self.decoderconfig = (True,)
        return self.mode, (0, 0, original[0] / scale, original[1] / scale)

    def read_mask(self) -> Image.Image:
        """The stored subject mask, mode ``L``: 255 = subject, 0 = background. Reads the
        chunks up to ``MASK``; decodes neither the background nor the subject."""
        from .codec import decode_mask_layer

        if self.fp is None:
            raise ValueError("the file is closed (after load()): use peterpan_format.read_mask(file)")
        self.fp.seek(self._layers_offset)
        collector = LayerCollector()
        while container.MASK not in collector.layers:
            collector.add(*container.read_chunk(self.fp))
        mask = decode_mask_layer(collector.layers[container.MASK], self.header)
        return Image.frombytes("L", self.header.size, (mask * 255).tobytes())

    def verify(self) -> None:
        """Check every chunk's length, CRC and order without decoding pixels."""
        assert self.fp is not None
        self.fp.seek(self.tile[0].offset)
        collector = LayerCollector()
        while not collector.done:
            collector.add(*container.read_chunk(self.fp))
        if self._exclusive_fp:
            self.fp.close()
        self.fp = None


class PpanDecoder(ImageFile.PyDecoder):
    """Fed the bytes after the metadata; decodes when DONE (or BGND, if reduced) arrives."""

    _pulls_fd = False

    def init(self, args: tuple) -> None:
        self.header: Header = args[0]
        self.reduced = bool(args[1]) if len(args) > 1 else False
        self._chunks = ChunkAssembler()
        self._layers = LayerCollector()
        self._finished = self._failed = False

    def decode(self, buffer: bytes | Image.SupportsArrayInterface) -> tuple[int, int]:
        try:
            for chunk_type, data in self._chunks.feed(bytes(buffer)):
                self._layers.add(chunk_type, data)
                if self._layers.done or (self.reduced and chunk_type == container.BGND):
                    self._render()
                    return -1, 0
        except Exception:
            self._failed = True
            raise
        return len(buffer), 0

    def cleanup(self) -> None:
        """With LOAD_TRUNCATED_IMAGES, a truncated file shows what its complete layers allow."""
        if not (self._finished or self._failed) and ImageFile.LOAD_TRUNCATED_IMAGES:
            self._render()

    def _render(self) -> None:
        from . import codec  # NumPy and Numba only once pixels are needed

        self._finished = True
        pixels = codec.decode(self.header, self._layers.layers, self.reduced)
        self.set_as_raw(pixels, self.mode)  # the array itself: no copy of the image


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """Encode the whole file in memory first, then write it in one go."""
    import numpy as np

    from . import codec
    from .masking import apply_no_subject, resolve_mask
    from .options import EncodeOptions

    params = im.encoderinfo
    options = EncodeOptions.from_mapping(params)
    image = _savable(im)
    mask, classes = resolve_mask(image, params.get("mask"), params.get("segmenter"))
    mask, no_subject = apply_no_subject(mask, options.no_subject)
    given = {key: params[key] for key in ("exif", "icc_profile", "xmp") if key in params}
    given |= {"subject_classes": params.get("subject_classes", classes), "no_subject": no_subject}
    chunks = metadata.pack(given, inherited=im.info)
    pixels = np.asarray(image).reshape(image.height, image.width, -1)
    jpeg = _jpeg_source(im, params) if options.coding in ("auto", "jpeg") else None
    fp.write(codec.encode(pixels, mask, image.mode, options, chunks, jpeg))


def _save_all(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """``save_all=True``: a PPAN file holds one image, so a single frame is saved and more
    frames are refused rather than dropped."""
    frames = getattr(im, "n_frames", 1) + len(im.encoderinfo.get("append_images", []))
    if frames > 1:
        raise ValueError(f"a PPAN file holds one image, not {frames} frames: save each frame on its own")
    _save(im, fp, filename)


def _jpeg_source(im: Image.Image, params: dict) -> bytes | None:
    """The JPEG file the image was decoded from, if at hand: ``jpeg_source=`` (bytes) or
    the file of an image opened from a JPEG. The encoder checks that it reproduces the
    pixels being saved, so a stale or edited source is never trusted."""
    if params.get("jpeg_source") is not None:
        if not isinstance(params["jpeg_source"], (bytes, bytearray, memoryview)):
            raise ValueError("jpeg_source must be the bytes of the JPEG file")
        return bytes(params["jpeg_source"])
    if im.format not in ("JPEG", "MPO") or not getattr(im, "filename", None):
        return None
    try:
        with open(im.filename, "rb") as source:
            return source.read()
    except OSError:
        return None


def _savable(im: Image.Image) -> Image.Image:
    """The image in L, RGB or RGBA; palette images become RGB(A), other modes are refused."""
    if im.mode in ("P", "PA", "LA", "La", "RGBa"):
        has_alpha = im.mode != "P" or "transparency" in im.info
        return im.convert("RGBA" if has_alpha else "RGB")
    if im.mode not in _SAVE_MODES:
        raise OSError(f"cannot write mode {im.mode} as {FORMAT}")
    return im.convert(_SAVE_MODES[im.mode]) if im.mode == "1" else im


def register() -> None:
    """Register the format with Pillow and ``mimetypes`` (idempotent)."""
    Image.register_open(FORMAT, PpanImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_save_all(FORMAT, _save_all)
    Image.register_extension(FORMAT, ".ppan")
    Image.register_mime(FORMAT, MIME)
    Image.register_decoder("ppan", PpanDecoder)
    mimetypes.add_type(MIME, ".ppan")


register()
