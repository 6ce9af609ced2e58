"""The ``ppan`` command: encode, decode, info and compare.

    ppan encode photos/ -o out/ --workers 2
    ppan decode out/ -o png/ --format png
    ppan info out/x.ppan --json
    ppan compare photo.jpg --mask mask.png -o view.png

Exit status: 0 done; 1 a file failed, or the output folder is in use by another run;
2 a bad command line (as argparse); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import re
import sys
import time
from pathlib import Path

from . import __version__, batch, outputs
from .batch import DECODE, DONE, ENCODE, FAILED, SKIPPED, Result
from .container import MAX_ERROR, MAX_FEATHER, MAX_SCALE
from .options import (DEFAULT_MAX_ERROR, DEFAULT_SUBJECT_QUALITY, NO_SUBJECT_POLICIES, SUBJECT_CODINGS,
                      SUBJECT_MODES, EncodeOptions)

INSTALL_HINT = 'pip install "peterpan-format[segment]"'
# the save options, by their EncodeOptions names; each has the flag --NAME-WITH-DASHES
_SAVE_OPTIONS = ("background_scale", "background_quality", "feather", "subject", "max_error",
                 "subject_quality", "subject_coding", "no_subject")


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

    encode = _command(commands, "encode", _encode, "encode images (files or folders) to .ppan")
    encode.add_argument("inputs", nargs="+", metavar="IN", help="image files, or folders searched recursively")
    _add_outdir(encode)
    masks = encode.add_mutually_exclusive_group()
    masks.add_argument("--mask", metavar="FILE",
                       help="the subject of a single input: an image of mode 1, L or P, non-zero = "
                            "subject (default: the segmenter finds it)")
    masks.add_argument("--masks", metavar="DIR",
                       help="masks laid out like the inputs: DIR/SUB/NAME.EXT for the input "
                            "IN/SUB/NAME.EXT, any image suffix; an input without one fails "
                            "(default: the segmenter finds each subject)")
    _add_save_options(encode)
    _add_batch_options(encode)

    decode = _command(commands, "decode", _decode, "decode .ppan files (or folders) to PNG, JPEG or WebP")
    decode.add_argument("inputs", nargs="+", metavar="IN", help=".ppan files, or folders searched recursively")
    _add_outdir(decode)
    decode.add_argument("--format", choices=sorted(batch.DECODE_FORMATS), default="png",
                        help="output format (default %(default)s)")
    _add_batch_options(decode)

    info = _command(commands, "info", _info, "describe .ppan files: header, layers, subject")
    info.add_argument("files", nargs="+", metavar="FILE", help=".ppan files")
    info.add_argument("--json", action="store_true", help="print one JSON object per file (default: text)")

    compare = _command(commands, "compare", _compare,
                       "side-by-side view against JPEG and WebP at the same bytes, with PSNR")
    compare.add_argument("file", metavar="FILE", help="an image to encode")
    compare.add_argument("--mask", metavar="FILE", help="subject mask (default: the segmenter finds it)")
    compare.add_argument("-o", "--output", metavar="PNG", help="the view to write (default: FILE.compare.png)")
    _add_save_options(compare)
    return parser


def _command(commands, name: str, function, text: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=text, description=text)
    parser.set_defaults(command=function, parser=parser)
    return parser


def _add_outdir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--outdir", metavar="DIR",
                        help="output folder, mirroring the input folders (default: next to each input)")


def _add_save_options(parser: argparse.ArgumentParser) -> None:
    default = EncodeOptions()
    parser.add_argument("--segmenter", metavar="NAME_OR_PATH",
                        help="model that finds the subject where no mask is given: an smp checkpoint "
                             "folder or .pt file (default: the embedded model)")
    parser.add_argument("--background-scale", type=int, default=default.background_scale, metavar="N",
                        help=f"store the background at 1/N of the size, 1-{MAX_SCALE} (default %(default)s)")
    parser.add_argument("--background-quality", type=int, default=default.background_quality, metavar="Q",
                        help="WebP quality of the background, 0-100 (default %(default)s)")
    parser.add_argument("--feather", type=int, default=default.feather, metavar="PX",
                        help=f"blend radius in pixels outside the subject, 0-{MAX_FEATHER} (default %(default)s)")
    parser.add_argument("--subject", choices=SUBJECT_MODES, default=default.subject,
                        help="lossless: bit-exact; near-lossless: every channel within --max-error; "
                             "high: DCT-coded like a JPEG at --subject-quality, fewer bytes; jpeg: a JPEG input's own "
                             "coefficients, or fail (default %(default)s)")
    parser.add_argument("--max-error", type=int, metavar="N",
                        help=f"with --subject near-lossless: largest error per channel, 1-{MAX_ERROR} "
                             f"(default {DEFAULT_MAX_ERROR})")
    parser.add_argument("--subject-quality", type=int, metavar="Q",
                        help=f"with --subject high: the JPEG quality of the subject, 1-100 "
                             f"(default {DEFAULT_SUBJECT_QUALITY})")
    parser.add_argument("--subject-coding", choices=SUBJECT_CODINGS, default=default.subject_coding,
                        help="auto: cm, or a JPEG input's own coefficients when smaller; cm codes the "
                             "pixels (a JPEG's too); webp, med: lossless only (default %(default)s)")
    parser.add_argument("--no-subject", choices=NO_SUBJECT_POLICIES, default=default.no_subject,
                        help="when no subject is found (or the mask is empty): keep the whole frame "
                             "as the subject, store the background alone, or fail the file "
                             "(default %(default)s)")


def _add_batch_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_at_least_one, default=1, metavar="N",
                       help="processes to run in (default %(default)s)")
    where.add_argument("--dask", metavar="ADDRESS",
                       help="run on a Dask scheduler, e.g. tcp://host:8786 (default: on this machine)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite outputs that exist, whoever made them (default: redo only "
                             "the outputs ppan made with other options, sources or masks)")


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _save_params(args: argparse.Namespace) -> dict:
    """The save options given, checked once (an error names the flag and exits 2)."""
    params = {name: getattr(args, name) for name in _SAVE_OPTIONS if getattr(args, name) is not None}
    try:
        EncodeOptions.from_mapping(params)
    except ValueError as exc:
        args.parser.error(_as_flags(str(exc)))
    if args.segmenter:
        params["segmenter"] = args.segmenter
    return params


def _as_flags(message: str) -> str:
    """EncodeOptions' message in the command's words: background_scale -> --background-scale,
    subject='high' -> --subject high."""
    names = "|".join(_SAVE_OPTIONS)

    def flag(match: re.Match) -> str:
        name, value = match["name"], match["value"]
        if value is None and "_" not in name:
            return match[0]  # a bare word such as "subject" may be prose
        return "--" + name.replace("_", "-") + (f" {value}" if value is not None else "")

    return re.sub(rf"\b(?P<name>{names})\b(?:=(?P<q>['\"]?)(?P<value>[^'\",;\s]+)(?P=q))?", flag, message)


def _require(args: argparse.Namespace, paths: list[str], kind: str = "file or folder") -> None:
    missing = [path for path in paths if not os.path.exists(path)]
    if missing:
        args.parser.error(f"no such {kind}: {', '.join(missing)}")


def _check_mask_source(args: argparse.Namespace) -> None:
    """Masks given, or a segmenter, not both; without masks, the segment extra must be
    installed: say so once, before any file."""
    flags = "--mask FILE" + (" or --masks DIR" if hasattr(args, "masks") else "")
    if args.mask or getattr(args, "masks", None):
        if args.segmenter:
            args.parser.error(f"--segmenter finds the subject where no mask is given: not with {flags}")
    elif not all(importlib.util.find_spec(name) for name in ("torch", "segmentation_models_pytorch")):
        args.parser.error(f"no mask given and no segmenter installed: use {flags}, or {INSTALL_HINT}")


def _encode(args: argparse.Namespace) -> int:
    params = _save_params(args)
    _require(args, args.inputs)
    if args.mask:
        _require(args, [args.mask], "mask file")
        if len(args.inputs) > 1 or os.path.isdir(args.inputs[0]):
            args.parser.error("--mask takes one input file; use --masks DIR for many")
    elif args.masks and not os.path.isdir(args.masks):
        args.parser.error(f"--masks: no such folder: {args.masks}")
    _check_mask_source(args)
    return _run(args, ENCODE, params, ".ppan", mask=args.mask, masks_dir=args.masks)


def _decode(args: argparse.Namespace) -> int:
    _require(args, args.inputs)
    return _run(args, DECODE, {"format": args.format}, batch.decode_suffix(args.format))


def _run(args: argparse.Namespace, kind: str, params: dict, suffix: str, **masks) -> int:
    sources = list(batch.collect(args.inputs, batch.input_suffixes(kind)))
    if not sources:
        args.parser.error(f"no {'.ppan files' if kind == DECODE else 'images'} in {', '.join(args.inputs)}")
    start = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(_dask_client(args)) if args.dask else None
            stack.enter_context(outputs.locked(batch.output_roots(args.inputs, args.outdir)))
            jobs, settled = batch.plan(kind, sources, args.outdir, params, suffix=suffix, force=args.force, **masks)
            for result in settled:
                _report(result)
            bar = stack.enter_context(_progress(len(jobs)))
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))  # libraries' chatter

            def progress(result: Result) -> None:
                _report(result, bar)
                bar.update(result)

            results = batch.run(jobs, workers=args.workers, client=client, progress=progress)
    except OSError as exc:  # the folder is in use or cannot be written, the Dask cluster failed
        print(f"ppan {kind}: {exc}", file=sys.stderr)
        return 1
    _summary(settled + results, time.perf_counter() - start)
    return 1 if any(r.status == FAILED for r in settled + results) else 0


def _dask_client(args: argparse.Namespace):
    try:
        from distributed import Client
    except ImportError:
        args.parser.error('--dask needs: pip install "peterpan-format[dask]"')
    try:
        return Client(args.dask)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"ppan: no Dask scheduler at {args.dask}: {exc}") from None


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
        self.bar = tqdm(total=self.total, unit="file", file=sys.stderr, dynamic_ncols=True,
                        disable=not self.total)
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
    no_subject = sum(r.no_subject is not None for r in done)
    print(f"{'files':>6} {'done':>6} {'skipped':>8} {'failed':>7} {'no subject':>10} {'input bytes':>13} "
          f"{'output bytes':>13} {'ratio':>6} {'time s':>7}")
    print(f"{len(results):6d} {counts[DONE]:6d} {counts[SKIPPED]:8d} {counts[FAILED]:7d} {no_subject:10d} "
          f"{inp:13d} {out:13d} {ratio:>6} {seconds:7.1f}")


def _info(args: argparse.Namespace) -> int:
    from .describe import describe

    failed = 0
    for path in args.files:
        try:
            info = describe(path)
        except (OSError, SyntaxError, ValueError) as exc:
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

    params = _save_params(args)
    segmenter = params.pop("segmenter", None)
    _require(args, [args.file] + ([args.mask] if args.mask else []), "file")
    _check_mask_source(args)
    output = Path(args.output or f"{args.file}.compare.png")
    try:
        with Image.open(args.file) as image:
            image.load()
        with contextlib.redirect_stdout(io.StringIO()):  # libraries' chatter
            mask = resolve_mask(image, Image.open(args.mask) if args.mask else None, segmenter)[0] != 0
        sheet, numbers = compare(image, np.asarray(mask), **params)
        sheet.save(output)
    except (OSError, SyntaxError, ValueError, ImportError, RuntimeError) as exc:
        print(f"ppan compare: {args.file}: {exc}", file=sys.stderr)
        return 1
    print(f"{'':8} {'bytes':>9} {'quality':>7} {'subject PSNR':>13} {'background PSNR':>16}")
    for name, row in numbers.items():
        print(f"{name:8} {row['bytes']:9d} {row.get('quality', '–'):>7} "
              f"{row['subject_psnr']:13.2f} {row['background_psnr']:16.2f}")
    print(f"side-by-side view: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
