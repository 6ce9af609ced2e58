"""The ``ppan`` command: encode, decode, info and compare.

    ppan encode photos/ -o out/ --workers 2
    ppan decode out/ -o png/ --format png
    ppan info out/x.ppan --json
    ppan compare photo.jpg --mask mask.png -o view.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import __version__, batch
from .batch import DECODE, DONE, ENCODE, FAILED, SKIPPED, Result
from .options import EncodeOptions


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.command(args)
    except KeyboardInterrupt:
        print("\ninterrupted: finished files are complete, no partial output was left", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppan", description="Convert images to and from .ppan.")
    parser.add_argument("--version", action="version", version=f"ppan {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    encode = commands.add_parser("encode", help="encode images (files or folders) to .ppan")
    encode.add_argument("inputs", nargs="+", metavar="IN")
    encode.add_argument("-o", "--outdir", help="output folder (default: next to each input)")
    masks = encode.add_mutually_exclusive_group()
    masks.add_argument("--mask", help="the subject mask for a single input (non-zero = subject)")
    masks.add_argument("--masks", metavar="DIR", help="folder of masks named like the inputs")
    encode.add_argument("--segmenter", metavar="NAME_OR_PATH", help="model that finds the subject")
    _add_save_options(encode)
    _add_batch_options(encode)
    encode.set_defaults(command=_encode)

    decode = commands.add_parser("decode", help="decode .ppan files (or folders) to PNG, JPEG or WebP")
    decode.add_argument("inputs", nargs="+", metavar="IN")
    decode.add_argument("-o", "--outdir", help="output folder (default: next to each input)")
    decode.add_argument("--format", choices=sorted(batch.DECODE_FORMATS), default="png")
    _add_batch_options(decode)
    decode.set_defaults(command=_decode)

    info = commands.add_parser("info", help="describe .ppan files: header, layers, subject")
    info.add_argument("files", nargs="+", metavar="FILE")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(command=_info)

    compare = commands.add_parser("compare", help="side-by-side view against JPEG/WebP at the same bytes")
    compare.add_argument("file", metavar="FILE", help="an image to encode")
    compare.add_argument("--mask", help="subject mask (default: the segmenter finds it)")
    compare.add_argument("-o", "--output", help="PNG to write (default: FILE.compare.png)")
    _add_save_options(compare)
    compare.set_defaults(command=_compare)
    return parser


def _add_save_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--background-scale", type=int, metavar="N")
    parser.add_argument("--background-quality", type=int, metavar="Q")
    parser.add_argument("--subject", metavar="MODE",
                        help="lossless (default), near-lossless, high or jpeg")
    parser.add_argument("--max-error", type=int, metavar="N",
                        help="near-lossless: largest error per channel, 1-31 (default 2)")
    parser.add_argument("--subject-quality", type=int, metavar="Q",
                        help="high: quality 1-100 (default 90: largest error 2)")
    parser.add_argument("--subject-coding", metavar="CODING",
                        help="auto (default: cm, or for a JPEG input its own DCT coefficients when "
                             "smaller), or one of cm, jpeg, webp, med; cm codes a JPEG's pixels")
    parser.add_argument("--feather", type=int, metavar="PX")


def _add_batch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="processes (default 1)")
    parser.add_argument("--dask", metavar="ADDRESS", help="run on a Dask scheduler, e.g. tcp://host:8786")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")


def _save_params(args: argparse.Namespace) -> dict:
    names = ("background_scale", "background_quality", "subject", "subject_coding", "max_error",
             "subject_quality", "feather", "segmenter")
    params = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    try:
        EncodeOptions.from_mapping(params)  # once, rather than once per file
    except ValueError as exc:
        raise SystemExit(f"ppan: {exc}") from None
    return params


def _encode(args: argparse.Namespace) -> int:
    if args.mask and len(args.inputs) > 1:
        raise SystemExit("ppan encode: --mask takes a single input; use --masks DIR for many")
    jobs, skipped = batch.plan(ENCODE, args.inputs, args.outdir, _save_params(args),
                               args.mask, args.masks, force=args.force)
    return _run(jobs, skipped, args)


def _decode(args: argparse.Namespace) -> int:
    jobs, skipped = batch.plan(DECODE, args.inputs, args.outdir, {"format": args.format},
                               suffix=batch.decode_suffix(args.format), force=args.force)
    return _run(jobs, skipped, args)


def _run(jobs: list, skipped: list[Result], args: argparse.Namespace) -> int:
    start = time.perf_counter()
    for result in skipped:
        _report(result)
    with _progress(len(jobs)) as bar:
        def progress(result: Result) -> None:
            _report(result, bar)
            bar.update(result)

        client = _dask_client(args.dask) if args.dask else None
        results = batch.run(jobs, workers=args.workers, client=client, progress=progress)
    _summary(skipped + results, time.perf_counter() - start)
    return 1 if any(r.status == FAILED for r in skipped + results) else 0


def _dask_client(address: str):
    try:
        from distributed import Client
    except ImportError as exc:
        raise SystemExit('ppan: --dask needs: pip install "peterpan-format[dask]"') from exc
    return Client(address)


def _report(result: Result, bar=None) -> None:
    if result.error:
        line = f"{result.status}: {result.job.source}: {result.error}"
        (bar.write if bar else lambda text: print(text, file=sys.stderr))(line)


class _progress:
    """A tqdm bar showing files/s and bytes saved, or nothing if tqdm is not installed."""

    def __init__(self, total: int):
        self.total, self.saved, self.bar = total, 0, None

    def __enter__(self):
        try:
            from tqdm import tqdm
        except ImportError:
            return self
        self.bar = tqdm(total=self.total, unit="file", file=sys.stderr, dynamic_ncols=True)
        return self

    def update(self, result: Result) -> None:
        if result.status == DONE:
            self.saved += result.input_bytes - result.output_bytes
        if self.bar:
            self.bar.set_postfix_str(f"saved {self.saved / 1e6:.1f} MB", refresh=False)
            self.bar.update(1)

    def write(self, text: str) -> None:
        (self.bar.write if self.bar else print)(text, file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.close()


def _summary(results: list[Result], seconds: float) -> None:
    done = [r for r in results if r.status == DONE]
    counts = {status: sum(r.status == status for r in results) for status in (DONE, SKIPPED, FAILED)}
    inp, out = sum(r.input_bytes for r in done), sum(r.output_bytes for r in done)
    ratio = f"{out / inp:.3f}" if inp else "–"
    print(f"{'files':>6} {'done':>6} {'skipped':>8} {'failed':>7} {'input bytes':>13} "
          f"{'output bytes':>13} {'ratio':>6} {'time s':>7}")
    print(f"{len(results):6d} {counts[DONE]:6d} {counts[SKIPPED]:8d} {counts[FAILED]:7d} "
          f"{inp:13d} {out:13d} {ratio:>6} {seconds:7.1f}")


def _info(args: argparse.Namespace) -> int:
    from .describe import describe

    failed = 0
    for path in args.files:
        try:
            info = describe(path)
        except OSError as exc:
            print(f"ppan info: {path}: {exc}", file=sys.stderr)
            failed = 1
            continue
        if args.json:
            print(json.dumps(info))
        else:
            _print_info(info)
    return failed


def _print_info(info: dict) -> None:
    subject = info["subject"]
    print(f"{info['path']}: PPAN v{info['version']} {info['width']}x{info['height']} {info['mode']}, "
          f"{info['file_bytes']} bytes ({info['bits_per_pixel']} bits/pixel)")
    print(f"  subject     {subject['area']:.1%} of the image, box {subject['box']}, "
          f"{subject['coding']}, {subject['bytes']} bytes")
    if subject["classes"]:
        print("  classes     " + ", ".join(f"{name} {n} px" for name, n in subject["classes"].items()))
    print(f"  background  1/{info['background_scale']} = {info['background']['size'][0]}x"
          f"{info['background']['size'][1]}, webp, {info['background']['bytes']} bytes; "
          f"feather {info['feather']} px")
    print(f"  mask        {info['mask']['bytes']} bytes")
    print(f"  metadata    {', '.join(info['metadata']) or 'none'}")
    print("  chunks      " + " ".join(f"{c['type']}:{c['bytes']}" for c in info["chunks"]))


def _compare(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from .masking import resolve_mask
    from .visual import compare

    with Image.open(args.file) as image:
        image.load()
    params = _save_params(args)
    mask_image = Image.open(args.mask) if args.mask else None
    mask = resolve_mask(image, mask_image, params.pop("segmenter", None))[0] != 0
    sheet, numbers = compare(image, np.asarray(mask), **params)
    output = Path(args.output or f"{args.file}.compare.png")
    sheet.save(output)
    print(f"{'':8} {'bytes':>9} {'quality':>7} {'subject PSNR':>13} {'background PSNR':>16}")
    for name, row in numbers.items():
        print(f"{name:8} {row['bytes']:9d} {row.get('quality', '–'):>7} "
              f"{row['subject_psnr']:13.2f} {row['background_psnr']:16.2f}")
    print(f"side-by-side view: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
