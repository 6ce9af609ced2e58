"""Numba kernels of the PPAN format (spec/FORMAT.md).

Each submodule holds small ``@numba.njit(cache=True, nogil=True)`` kernels and thin Python
wrappers with the public names. The wrappers hand the kernels only C-contiguous ``uint8``
arrays (read-only views of the inputs, writeable arrays only for outputs) and Python ints,
so every kernel compiles to a single signature. The wrappers also allocate every array a
kernel needs (NumPy's allocation inside a kernel compiles Numba's implementation of it,
each signature costing a few tenths of a second in a fresh environment), and a body that
serves two codings or both directions is entered through two small kernels, each
specialised for its own case at compile time, so that a file compiles only what it uses
(docs/benchmarks/startup.md).

- ``rle``: the MASK run-length stream (§5).
- ``resample``: the encoder's area downsampling (§12) and the bicubic upsampling (§8.1).
- ``blend``: feathering of the background next to the subject (§8.3).
- ``predict``: MED prediction of the subject pixels, SUBJ coding 2 (§6.2).
- ``entropy``: the context-modelling range coder of the subject pixels, SUBJ codings 3
  and 5 (§6.3, §6.5).
- ``jpeg_huffman``, ``jpeg_idct``, ``jpeg_coder``: JPEG entropy decoding, libjpeg-turbo's
  IDCT and upsampling, and the coefficient coder of SUBJ coding 4 (§6.4).
- ``threads``: the wrappers' independent pieces (coefficient segments, bands of rows) on
  one thread per CPU.

Compiled kernels are cached on disk in a per-user folder (``cache``), never beside the
sources; importing this package sets that up before any kernel is defined.
"""

import numba
import numpy as np

from . import cache

cache.install()


@numba.njit(cache=True, nogil=True)
def count_set(mask):
    """Number of nonzero values of a 2-D mask."""
    n = 0
    for y in range(mask.shape[0]):
        for x in range(mask.shape[1]):
            n += mask[y, x] != 0
    return n


def as_u8(a, ndim: int, name: str) -> np.ndarray:
    """Return ``a`` as a read-only, C-contiguous uint8 array of ``ndim`` dimensions.

    Bytes-like objects are read as uint8 and boolean arrays are viewed as uint8; other
    dtypes raise ``TypeError``. The data is copied only when ``a`` is not C-contiguous.
    """
    if isinstance(a, (bytes, bytearray, memoryview)):
        a = np.frombuffer(a, np.uint8)
    a = np.asarray(a)
    if a.dtype == np.bool_:
        a = a.view(np.uint8)
    if a.dtype != np.uint8:
        raise TypeError(f"{name} must be a uint8 array, not {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, not {a.ndim}")
    a = np.ascontiguousarray(a).view()
    a.flags.writeable = False
    return a


def as_box(pixels, mask) -> tuple[np.ndarray, np.ndarray]:
    """A subject box crop uint8[h, w, C] (C = 1, 3 or 4) and its uint8[h, w] mask, checked."""
    pixels = as_u8(pixels, 3, "pixels")
    mask = as_u8(mask, 2, "mask")
    if pixels.shape[2] not in (1, 3, 4):
        raise ValueError("pixels must have 1, 3 or 4 channels")
    if mask.shape != pixels.shape[:2]:
        raise ValueError("mask and pixels must have the same height and width")
    return pixels, mask
