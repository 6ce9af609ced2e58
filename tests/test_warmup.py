"""python -m peterpan_format.warmup leaves nothing for ordinary use to compile."""

import os
import subprocess
import sys

# Ordinary use, written apart from warmup.warm(): any kernel signature it reaches that the
# warm-up did not reach would be compiled in a fresh environment.
USE = r"""
import io, sys, numpy as np
import numba
from peterpan_format import warmup


def signatures():
    return {(name, kernel.__name__, str(sig)) for name, module in list(sys.modules.items())
            if name.startswith("peterpan_format._kernels")
            for kernel in vars(module).values() if isinstance(kernel, numba.core.registry.CPUDispatcher)
            for sig in kernel.signatures}


warmup.warm()
warmed = signatures()
from PIL import Image, ImageFile
import peterpan_format
from peterpan_format import describe

folder = sys.argv[1]
rng = np.random.default_rng(1)
photo = Image.fromarray(rng.integers(0, 256, (90, 120, 3), np.uint8))
mask = np.zeros((90, 120), np.uint8)
mask[20:70, 30:100] = 255
for i, (image, params) in enumerate([
    (photo, {}), (photo.convert("L"), {"quality": 80}), (photo.convert("RGBA"), {"lossless": True}),
    (photo, {"subject": "near-lossless", "max_error": 5}), (photo.convert("P"), {"subject_coding": "med"}),
]):
    path = f"{folder}/{i}.ppan"
    peterpan_format.save(image, path, mask=Image.fromarray(mask), **params)
    with Image.open(path) as im:
        im.load()
    with Image.open(path) as im:
        im.thumbnail((30, 30))
    parser = ImageFile.Parser()
    parser.feed(open(path, "rb").read())
    parser.close()
    peterpan_format.read_mask(path)
    describe.describe(path)
photo.save(f"{folder}/x.jpg", quality=85, subsampling=1)
with Image.open(f"{folder}/x.jpg") as im:
    im.save(f"{folder}/j.ppan", mask=mask > 0)
Image.open(f"{folder}/j.ppan").load()
Image.open(io.BytesIO(peterpan_format.from_jpeg(f"{folder}/x.jpg", mask=mask > 0))).load()
print(len(warmed), sorted(signatures() - warmed))
"""


def _python(*args):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_BOUNDSCHECK"}
    result = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_ordinary_use_needs_no_kernel_signature_the_warm_up_did_not_compile(tmp_path):
    count, missed = _python("-c", USE, str(tmp_path)).split(" ", 1)
    assert int(count) >= 10 and missed.strip() == "[]", missed


def test_the_command_says_where_the_cache_is(tmp_path):
    out = _python("-m", "peterpan_format.warmup")
    assert out.startswith("peterpan-format: kernels ready in ") and "cache: /" in out
