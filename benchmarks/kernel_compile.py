"""First-call (compile / cache-load) cost and steady-state throughput of the Numba kernels.

Usage: python benchmarks/kernel_compile.py [--repeat N]

Every measurement runs in a fresh subprocess with NUMBA_CACHE_DIR pointing at a new
temporary directory: the first run finds the cache empty (every kernel compiles), the
second finds it warm (every kernel loads from disk), the third measures throughput on a
12 MP RGB image (4000 x 3000) with a subject-shaped mask (the range coder and the JPEG subject included). Prints a
Markdown table.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

W, H, S, RADIUS = 4000, 3000, 4, 8


def tiny_jpeg(img) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(img).save(out, "JPEG", quality=90)
    return out.getvalue()


def tiny_calls():
    """One tiny call per public kernel, in the order a round trip would use them."""
    from peterpan_format import jpeg
    from peterpan_format._kernels import blend, entropy, predict, resample, rle

    img = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    mask = np.zeros((5, 7), np.uint8)
    mask[1:4, 2:5] = 1
    runs = np.array([7] + [2, 3, 2] * 3 + [7], np.uint8)  # the runs of that mask
    res = np.zeros(3 * 9, np.uint8)
    small = np.zeros((3, 4, 3), np.uint8)
    up = np.zeros((5, 7, 3), np.uint8)
    jpeg_file = tiny_jpeg(img)
    made = {}  # what the encoders wrote, for the decoders called after them
    return [
        ("area_downsample", lambda: resample.area_downsample(img, 2)),
        ("encode_mask", lambda: rle.encode_mask(mask)),
        ("med_encode", lambda: predict.med_encode(img, mask)),
        ("decode_mask", lambda: rle.decode_mask(runs, 7, 5)),
        ("med_decode", lambda: predict.med_decode(res, mask, 3)),
        ("bicubic_upsample", lambda: resample.bicubic_upsample(small, 2, 7, 5)),
        ("feather", lambda: blend.feather(img.copy(), up, mask, 2)),
        ("cm_encode (codings 3, 5)", lambda: made.update(cm=entropy.cm_encode(img, mask),
                                                         near=entropy.cm_encode(img, mask, 2))),
        ("cm_decode (codings 3, 5)", lambda: (entropy.cm_decode(made["cm"], mask, 3),
                                              entropy.cm_decode(made["near"], mask, 3, 2))),
        ("encode_jpeg_subject", lambda: made.update(jpeg=jpeg.encode_jpeg_subject(jpeg_file, mask))),
        ("decode_jpeg_subject", lambda: jpeg.decode_jpeg_subject(made["jpeg"], mask)),
    ]


def child_first_call():
    t0 = time.perf_counter()
    calls = tiny_calls()  # imports numba and the kernel modules, compiles nothing
    t1 = time.perf_counter()
    from numba.core.registry import cpu_target

    cpu_target.target_context.refresh()  # numba's one-time start-up, paid by any first call
    result = {"import": t1 - t0, "numba start-up": time.perf_counter() - t1}
    for name, call in calls:
        t0 = time.perf_counter()
        call()
        result[name] = time.perf_counter() - t0
    return result


def realistic_scene(rng):
    """A photo-like RGB image and a subject mask with an irregular outline (about 40 %)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    theta = np.arctan2(yy - 1650, xx - 2000)
    radius = 1150 * (1 + 0.08 * np.sin(7 * theta) + 0.04 * np.sin(23 * theta))
    mask = (np.hypot((yy - 1650) * 1.1, xx - 2000) <= radius).astype(np.uint8)
    mask[2200:2260, 1500:2500] = 0  # a gap through the subject
    base = np.stack([np.sin(xx / (90 + 20 * c)) * 70 + np.cos(yy / (130 - 15 * c)) * 50 for c in range(3)], -1)
    img = np.clip(base + 128 + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    return img, mask


def timed(fn, setup, repeat):
    times = []
    for _ in range(repeat):
        args = setup()
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def child_throughput(repeat):
    from peterpan_format import jpeg
    from peterpan_format._kernels import blend, entropy, predict, resample, rle

    img, mask = realistic_scene(np.random.default_rng(0))
    ys, xs = np.nonzero(mask)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    crop, mcrop = np.ascontiguousarray(img[box]), np.ascontiguousarray(mask[box])
    small = resample.area_downsample(img, S)
    up = resample.bicubic_upsample(small, S, W, H)
    composite = np.where(mask[..., None] != 0, img, up)
    runs = rle.encode_mask(mask)
    res = predict.med_encode(crop, mcrop)
    stream, near_stream = entropy.cm_encode(crop, mcrop), entropy.cm_encode(crop, mcrop, 2)
    jpeg_file = tiny_jpeg(img)
    payload = jpeg.encode_jpeg_subject(jpeg_file, mask, verify=False)
    mp, box_mp = W * H / 1e6, mcrop.size / 1e6
    cases = [
        ("area_downsample", f"{W}x{H} RGB, s={S}", mp, resample.area_downsample, lambda: (img, S)),
        ("bicubic_upsample", f"to {W}x{H} RGB, s={S}", mp, resample.bicubic_upsample, lambda: (small, S, W, H)),
        ("feather", f"{W}x{H} RGB, F={RADIUS}", mp, blend.feather, lambda: (composite.copy(), up, mask, RADIUS)),
        ("encode_mask", f"{W}x{H}, {len(runs)} B of runs", mp, rle.encode_mask, lambda: (mask,)),
        ("decode_mask", f"{W}x{H}, {len(runs)} B of runs", mp, rle.decode_mask, lambda: (runs, W, H)),
        ("med_encode", f"box {crop.shape[1]}x{crop.shape[0]} RGB", box_mp, predict.med_encode, lambda: (crop, mcrop)),
        ("med_decode", f"box {crop.shape[1]}x{crop.shape[0]} RGB", box_mp, predict.med_decode, lambda: (res, mcrop, 3)),
        ("cm_encode (codings 3, 5)", f"box {crop.shape[1]}x{crop.shape[0]} RGB, N=0", box_mp, entropy.cm_encode,
         lambda: (crop, mcrop)),
        ("cm_decode (codings 3, 5)", f"box {crop.shape[1]}x{crop.shape[0]} RGB, N=0 / 2", box_mp,
         lambda *a: (entropy.cm_decode(*a), entropy.cm_decode(near_stream, mcrop, 3, 2)), lambda: (stream, mcrop, 3)),
        ("encode_jpeg_subject", f"{W}x{H} JPEG q90, verified", mp, jpeg.encode_jpeg_subject,
         lambda: (jpeg_file, mask)),
        ("decode_jpeg_subject", f"{W}x{H} JPEG q90", mp, jpeg.decode_jpeg_subject, lambda: (payload, mask)),
    ]
    out = {"subject_fraction": float(mask.mean())}
    for name, what, size, fn, setup in cases:
        fn(*setup())
        seconds = timed(fn, setup, repeat)
        out[name] = {"what": what, "ms": seconds * 1e3, "mp_s": size / seconds}
    return out


def run_child(mode, cache_dir, repeat):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    cmd = [sys.executable, __file__, "--child", mode, "--repeat", str(repeat)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per throughput case")
    parser.add_argument("--child", choices=["first", "throughput"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child_first_call() if args.child == "first" else child_throughput(args.repeat)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="ppan-numba-cache-") as cache_dir:
        cold = run_child("first", cache_dir, args.repeat)
        warm = run_child("first", cache_dir, args.repeat)
        cache_kib = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(cache_dir) for f in fs) / 1024
        thr = run_child("throughput", cache_dir, args.repeat)
    print(f"numba cache: {cache_kib:.0f} KiB; subject {thr['subject_fraction']:.0%} of the image; "
          f"median of {args.repeat} runs\n")
    print("| kernel | first call, cold cache (s) | first call, warm cache (ms) | steady state | ms | MP/s |")
    print("|---|---:|---:|---|---:|---:|")
    setup = ["import", "numba start-up"]
    for name in setup:
        print(f"| ({name}) | {cold[name]:.2f} | {warm[name] * 1e3:.0f} | | | |")
    kernels = [k for k in cold if k not in setup]
    for name in kernels:
        t = thr[name]
        print(f"| {name} | {cold[name]:.2f} | {warm[name] * 1e3:.1f} | {t['what']} | {t['ms']:.1f} | {t['mp_s']:.0f} |")
    total_cold = sum(cold[k] for k in kernels)
    total_warm = sum(warm[k] for k in kernels)
    print(f"| **all kernels** | {total_cold:.2f} | {total_warm * 1e3:.0f} | | | |")


if __name__ == "__main__":
    main()
