"""The ppan command on images the tests make: exit codes, resume and redo, masks, refusals,
permissions, locking, Ctrl-C, kill -9 and Dask."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import peterpan_format
from conftest import as_array, synthetic
from peterpan_format import batch, cli, outputs

SIZE = (96, 72)
LAYOUT = ["a.png", "b.jpg", "sub/c.png"]  # b: a JPEG, so its subject keeps the JPEG's coefficients


def run(*args, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``ppan ARGS`` run in this process."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def ppan(*args, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "peterpan_format.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300, **popen)


def counts(stdout: str) -> list[int]:
    """files, done, skipped, failed from the summary line."""
    return [int(n) for n in stdout.splitlines()[-1].split()[:4]]


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and outputs.HIDDEN not in p.parts)


def mask_image(kind: str = "ellipse", size=SIZE) -> Image.Image:
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    if kind == "ellipse":
        mask = ((x - w * 0.45) / (w * 0.3)) ** 2 + ((y - h * 0.5) / (h * 0.35)) ** 2 <= 1
    elif kind == "left":
        mask = x < w // 3
    else:
        mask = np.zeros((h, w), bool)
    return Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), "L")


def make_inputs(root: Path, names=LAYOUT, size=SIZE) -> Path:
    """root/in/NAME images and root/masks/NAME-as-png masks (the ellipse)."""
    for i, name in enumerate(names):
        image, _ = synthetic("RGB", size, seed=i)
        for folder, picture in (("in", image), ("masks", mask_image(size=size))):
            path = root / folder / (name if folder == "in" else Path(name).with_suffix(".png"))
            path.parent.mkdir(parents=True, exist_ok=True)
            picture.save(path, quality=90)
    return root


@pytest.fixture
def tree(tmp_path):
    return make_inputs(tmp_path)


def subject_area(path: Path) -> float:
    from peterpan_format.describe import describe

    return describe(path)["subject"]["area"]


def test_encode_decode_and_resume(tree, capsys):
    code, out, _ = run("encode", tree / "in", "-o", tree / "out", "--masks", tree / "masks", capsys=capsys)
    assert code == 0 and counts(out) == [3, 3, 0, 0]
    assert files(tree / "out") == ["a.ppan", "b.ppan", "sub/c.ppan"]
    mask = np.asarray(mask_image()) > 0
    for name in LAYOUT:
        with Image.open(tree / "in" / name) as original, Image.open(tree / "out" / Path(name).with_suffix(".ppan")) as ppan_image:
            np.testing.assert_array_equal(as_array(ppan_image)[mask], as_array(original.convert("RGB"))[mask])
    assert json.loads(cli_info(tree / "out" / "b.ppan", capsys))["subject"]["coding"] == "jpeg"

    before = {p: (tree / "out" / p).stat().st_mtime_ns for p in files(tree / "out")}
    code, out, _ = run("encode", tree / "in", "-o", tree / "out", "--masks", tree / "masks", capsys=capsys)
    assert code == 0 and counts(out) == [3, 0, 3, 0]
    assert before == {p: (tree / "out" / p).stat().st_mtime_ns for p in before}

    code, out, _ = run("decode", tree / "out", "-o", tree / "png", capsys=capsys)
    assert code == 0 and counts(out) == [3, 3, 0, 0]
    assert files(tree / "png") == ["a.png", "b.png", "sub/c.png"]
    with Image.open(tree / "png" / "a.png") as png, Image.open(tree / "out" / "a.ppan") as ppan_image:
        np.testing.assert_array_equal(as_array(png), as_array(ppan_image))


def cli_info(path: Path, capsys) -> str:
    code, out, _ = run("info", "--json", path, capsys=capsys)
    assert code == 0
    return out


def test_info(tree, capsys):
    run("encode", tree / "in" / "a.png", "--mask", tree / "masks" / "a.png", capsys=capsys)
    info = json.loads(cli_info(tree / "in" / "a.ppan", capsys))
    assert {"path", "format", "version", "width", "height", "mode", "background_scale", "feather",
            "file_bytes", "bits_per_pixel", "subject", "background", "mask", "metadata", "chunks"} <= set(info)
    assert (info["format"], info["mode"], info["width"], info["height"]) == ("PPAN", "RGB", *SIZE)
    assert [c["type"] for c in info["chunks"]] == ["HEAD", "BGND", "MASK", "SUBJ", "DONE"]
    assert sum(c["bytes"] + 12 for c in info["chunks"]) + 8 == info["file_bytes"]
    code, out, _ = run("info", tree / "in" / "a.ppan", capsys=capsys)
    assert code == 0 and out.startswith(f"{tree / 'in' / 'a.ppan'}: PPAN v1 96x72 RGB")
    code, _, err = run("info", tree / "in" / "a.ppan", tree / "masks" / "a.png", capsys=capsys)
    assert code == 1 and "a.png" in err and len(err.splitlines()) == 1


def test_jpeg_inputs_keep_their_coefficients_unless_told(tree, capsys):
    args = [tree / "in" / "b.jpg", "--mask", tree / "masks" / "b.png"]
    for folder, options in (("kept", []), ("pixels", ["--subject-coding", "cm"]),
                            ("near", ["--subject", "near-lossless", "--max-error", "6", "--subject-coding", "cm"])):
        assert run("encode", *args, "-o", tree / folder, *options, capsys=capsys)[0] == 0
    kept, pixels, near = (json.loads(cli_info(tree / d / "b.ppan", capsys)) for d in ("kept", "pixels", "near"))
    assert [f["subject"]["coding"] for f in (kept, pixels, near)] == ["jpeg", "cm", "cm-near"]
    assert kept["file_bytes"] < pixels["file_bytes"] and near["file_bytes"] < pixels["file_bytes"]


def test_redone_when_what_it_was_made_with_changes(tree, capsys, monkeypatch):
    args = ["encode", tree / "in", "-o", tree / "out", "--masks", tree / "masks"]
    assert counts(run(*args, capsys=capsys)[1]) == [3, 3, 0, 0]
    assert counts(run(*args, "--background-scale", "3", capsys=capsys)[1]) == [3, 3, 0, 0]  # other options
    assert counts(run(*args, "--background-scale", "3", capsys=capsys)[1]) == [3, 0, 3, 0]

    mask_image("left").save(tree / "masks" / "a.png")  # another mask
    assert counts(run(*args, "--background-scale", "3", capsys=capsys)[1]) == [3, 1, 2, 0]
    assert subject_area(tree / "out" / "a.ppan") == pytest.approx(1 / 3, abs=0.02)

    image, _ = synthetic("RGB", SIZE, seed=9)  # another source
    image.save(tree / "in" / "sub" / "c.png")
    assert counts(run(*args, "--background-scale", "3", capsys=capsys)[1]) == [3, 1, 2, 0]

    monkeypatch.setattr(peterpan_format, "__version__", "99.0")  # another version
    assert counts(run(*args, "--background-scale", "3", capsys=capsys)[1]) == [3, 3, 0, 0]
    assert counts(run(*args, "--background-scale", "3", "--force", capsys=capsys)[1]) == [3, 3, 0, 0]


def test_outputs_get_a_new_files_usual_permissions(tree, capsys):
    old = os.umask(0o027)
    try:
        code, _, _ = run("encode", tree / "in", "-o", tree / "out", "--masks", tree / "masks", capsys=capsys)
        Image.new("L", (4, 4)).save(tree / "pillow.png")
    finally:
        os.umask(old)
    assert code == 0
    expected = (tree / "pillow.png").stat().st_mode & 0o777
    assert expected == 0o640
    for name in ("a.ppan", "b.ppan", "sub/c.ppan", f"{outputs.HIDDEN}/a.ppan.json"):
        assert (tree / "out" / name).stat().st_mode & 0o777 == expected, name


def test_masks_must_match_their_photo_exactly(tmp_path, capsys):
    make_inputs(tmp_path, ["photo[1].png", "x.png", "y.png"])
    (tmp_path / "masks" / "photo[1].png").rename(tmp_path / "masks" / "photo1.png")  # not photo[1]'s
    mask_image("empty").save(tmp_path / "masks" / "x.old.png")  # not x's either
    mask_image("left").save(tmp_path / "masks" / "y.tif")  # a second mask for y
    code, out, err = run("encode", tmp_path / "in", "-o", tmp_path / "out", "--masks", tmp_path / "masks",
                         capsys=capsys)
    assert code == 1 and counts(out) == [3, 1, 0, 2]
    assert f"photo[1].png: no mask photo[1].<image suffix> in {tmp_path / 'masks'}" in err
    assert "y.png: 2 masks for it" in err and "y.png, y.tif" in err
    assert files(tmp_path / "out") == ["x.ppan"]
    assert subject_area(tmp_path / "out" / "x.ppan") > 0.2  # x.png's ellipse, not x.old.png


def test_no_subject_policy_and_its_count(tree, capsys):
    mask_image("empty").save(tree / "masks" / "a.png")  # a has no subject; b and c do
    code, out, _ = run("encode", tree / "in", "-o", tree / "keep", "--masks", tree / "masks", capsys=capsys)
    assert code == 0 and counts(out) == [3, 3, 0, 0] and int(out.splitlines()[-1].split()[4]) == 1
    assert "no subject" in out.splitlines()[-2]
    with Image.open(tree / "in" / "a.png") as original, Image.open(tree / "keep" / "a.ppan") as kept:
        assert kept.info["no_subject"] == "keep"
        np.testing.assert_array_equal(as_array(kept), as_array(original))
    code, out, _ = run("encode", tree / "in", "-o", tree / "bg", "--masks", tree / "masks",
                       "--no-subject", "background", capsys=capsys)
    assert code == 0 and int(out.splitlines()[-1].split()[4]) == 1
    assert subject_area(tree / "bg" / "a.ppan") == 0
    code, out, err = run("encode", tree / "in", "-o", tree / "err", "--masks", tree / "masks",
                         "--no-subject", "error", capsys=capsys)
    assert code == 1 and counts(out) == [3, 2, 0, 1] and "a.png: ValueError: no subject found" in err
    assert files(tree / "err") == ["b.ppan", "sub/c.ppan"]


def test_masks_mirror_the_input_folders(tree, capsys):
    (tree / "masks" / "sub" / "c.png").rename(tree / "masks" / "c.png")
    code, _, err = run("encode", tree / "in", "-o", tree / "out", "--masks", tree / "masks", capsys=capsys)
    assert code == 1 and f"no mask c.<image suffix> in {tree / 'masks' / 'sub'}" in err


def test_never_overwrites_what_ppan_did_not_write(tree, capsys):
    target = tree / "in" / "a.ppan"
    target.write_bytes(b"mine")
    args = ["encode", tree / "in" / "a.png", "--mask", tree / "masks" / "a.png"]
    code, out, err = run(*args, capsys=capsys)
    assert code == 1 and counts(out) == [1, 0, 0, 1]
    assert "exists, and ppan has no record of writing it (use --force to overwrite)" in err
    assert target.read_bytes() == b"mine"
    assert run(*args, "--force", capsys=capsys)[0] == 0 and target.read_bytes()[:4] != b"mine"

    target.write_bytes(target.read_bytes() + b"edited")  # changed since ppan wrote it
    code, _, err = run(*args, capsys=capsys)
    assert code == 1 and "was changed since ppan wrote it" in err


def test_failed_files_fail_the_batch(tree, capsys):
    (tree / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    code, out, err = run("encode", tree / "in", "-o", tree / "out", "--masks", tree / "masks", capsys=capsys)
    assert code == 1 and counts(out) == [4, 3, 0, 1] and "broken.jpg" in err

    (tree / "out" / "broken.ppan").write_bytes(b"\x89PPAN\r\n\x1a\n" + bytes(40))
    code, out, err = run("decode", tree / "out", "-o", tree / "png", capsys=capsys)
    assert code == 1 and counts(out) == [4, 3, 0, 1] and "broken.ppan" in err
    assert files(tree / "png") == ["a.png", "b.png", "sub/c.png"]


def test_rgb_mask_is_refused_like_the_api_refuses_it(tree, capsys):
    Image.new("RGB", SIZE, "white").save(tree / "rgb.png")
    code, _, err = run("encode", tree / "in" / "a.png", "--mask", tree / "rgb.png", "-o", tree / "out",
                       capsys=capsys)
    assert code == 1 and "mask must be a mode 1, L or P image, not RGB" in err
    assert not (tree / "out" / "a.ppan").exists()


@pytest.mark.parametrize("args, message", [
    (["--masks", "{t}/nowhere"], "--masks: no such folder"),
    (["--mask", "{t}/nowhere.png"], "no such mask file"),
    (["--mask", "{t}/masks/a.png", "--masks", "{t}/masks"], "not allowed with argument"),
    (["--workers", "0"], "argument --workers: must be at least 1"),
    (["--workers", "2", "--dask", "tcp://x:1"], "not allowed with argument"),
    (["--background-scale", "9"], "--background-scale must be an integer in 1..8, got 9"),
    (["--feather", "x"], "argument --feather: invalid int value"),
    (["--max-error", "3"], "--max-error goes with --subject near-lossless"),
    (["--subject", "jpeg", "--subject-coding", "webp"], "--subject jpeg cannot use --subject-coding webp"),
    (["--subject", "best"], "argument --subject: invalid choice: 'best'"),
    (["--masks", "{t}/masks", "--segmenter", "model.pt"], "--segmenter finds the subject where no mask"),
])
def test_command_line_errors_exit_2_naming_the_flag(tree, capsys, args, message):
    args = [a.format(t=tree) for a in args]
    inputs = [tree / "in" / "a.png"] if "--mask" in args else [tree / "in"]
    code, out, err = run("encode", *inputs, "-o", tree / "out", *args, capsys=capsys)
    assert code == 2 and message in err and out == ""
    assert not (tree / "out").exists()


def test_nothing_to_do_is_an_error(tree, capsys):
    code, _, err = run("decode", tree / "in", capsys=capsys)
    assert code == 2 and f"no .ppan files in {tree / 'in'}" in err
    code, _, err = run("encode", tree / "nowhere.png", "--mask", tree / "masks" / "a.png", capsys=capsys)
    assert code == 2 and "no such file or folder" in err
    code, _, err = run("encode", tree / "in", "--mask", tree / "masks" / "a.png", capsys=capsys)
    assert code == 2 and "--mask takes one input file" in err


def test_without_the_segmenter_it_says_so_once(tree, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if the segment extra were not installed
    for command in (["encode", tree / "in"], ["compare", tree / "in" / "a.png"]):
        code, out, err = run(*command, capsys=capsys)
        assert code == 2 and out == ""
        assert err.count('pip install "peterpan-format[segment]"') == 1 and "--mask FILE" in err
        assert "Traceback" not in err
    assert files(tree / "in") == LAYOUT


def test_every_option_has_help_showing_its_default():
    parser = cli._parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == {"encode", "decode", "info", "compare"}
    for name, command in commands.items():
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (name, action.dest)
            if action.option_strings and not isinstance(action, argparse._StoreTrueAction):
                assert "default" in action.help, (name, action.dest)
            if action.default not in (None, False):
                assert "%(default)s" in action.help, (name, action.dest)
    assert commands["encode"]._option_string_actions["--subject"].choices == ("lossless", "near-lossless",
                                                                              "high", "jpeg")


def test_libraries_print_nothing_on_stdout(tree, capsys, monkeypatch):
    convert = batch._convert

    def chatty(job):
        print("Loading weights from local directory")
        return convert(job)

    monkeypatch.setattr(batch, "_convert", chatty)
    code, out, _ = run("encode", tree / "in", "-o", tree / "out", "--masks", tree / "masks", capsys=capsys)
    assert code == 0 and len(out.splitlines()) == 2 and "Loading" not in out  # the summary alone


def test_stale_temporary_files_are_removed(tree, capsys):
    out = tree / "out"
    (out / outputs.HIDDEN).mkdir(parents=True)
    stale = [out / ".a.ppan.k3x9_a2b.tmp", out / outputs.HIDDEN / ".a.ppan.json.0a1b2c3d.tmp",
             out / "sub" / ".c.ppan.abcdefgh.tmp"]
    kept = [out / ".notes.txt.abcdefgh.tmp", out / ".a.ppan.tmp.keep"]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    code, _, _ = run("encode", tree / "in", "-o", out, "--masks", tree / "masks", capsys=capsys)
    assert code == 0
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


def test_a_folder_in_use_is_refused(tree, capsys):
    args = ["encode", tree / "in", "-o", tree / "out", "--masks", tree / "masks"]
    with outputs.locked([tree / "out"]):
        result = ppan(*args)  # another process
        assert result.returncode == 1, result.stderr
        assert f"{tree / 'out'} is in use by another ppan run" in result.stderr
        with pytest.raises(outputs.FolderBusy):
            batch.batch([tree / "in"], tree / "out", masks_dir=tree / "masks")
    assert files(tree / "out") == []
    assert run(*args, capsys=capsys)[0] == 0


def test_an_output_folder_that_cannot_be_made_is_one_message(tree, capsys):
    code, out, err = run("encode", tree / "in", "-o", tree / "in" / "a.png" / "out", "--masks", tree / "masks",
                         capsys=capsys)
    assert code == 1 and out == "" and len(err.splitlines()) == 1 and "a.png" in err


def test_compare_sheet(tree, capsys):
    code, out, err = run("compare", tree / "in" / "b.jpg", "--mask", tree / "masks" / "b.png",
                         "-o", tree / "view.png", capsys=capsys)
    assert code == 0, err
    name, _, _, subject_psnr, _ = out.splitlines()[1].split()
    assert (name, subject_psnr) == ("ppan", "inf")  # a JPEG input keeps its subject exactly
    with Image.open(tree / "view.png") as view:
        assert view.width == 5 * SIZE[0] and view.height > SIZE[1] + SIZE[1] // 4 * 4
        band = np.asarray(view.convert("L").crop((0, 0, view.width, 20)))
    assert np.median(band) < 64  # a dark band behind the labels ...
    for i in range(5):  # ... with white text over every panel
        assert band[:, i * SIZE[0]:(i + 1) * SIZE[0]].max() > 200


def test_compare_errors_are_one_line(tree, capsys):
    (tree / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    code, _, err = run("compare", tree / "broken.jpg", "--mask", tree / "masks" / "a.png", capsys=capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "broken.jpg" in err
    code, _, err = run("compare", tree / "in" / "a.png", "--mask", tree / "masks" / "a.png",
                       "--segmenter", "x.pt", capsys=capsys)
    assert code == 2 and "--segmenter" in err


def slow_batch(root: Path, n: int = 12) -> Path:
    """root/in with n larger images (so that a run lasts long enough to interrupt)."""
    return make_inputs(root, [f"p{i:02d}.png" for i in range(n)], size=(320, 240))


def wait_for_output(folder: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not list(folder.glob("*.ppan")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)


@pytest.mark.parametrize("workers, group", [(1, False), (2, True)])
def test_ctrl_c_leaves_complete_files_and_resumes(tmp_path, workers, group):
    slow_batch(tmp_path)
    args = ["encode", tmp_path / "in", "-o", tmp_path / "out", "--masks", tmp_path / "masks", "--workers", workers]
    # Ctrl-C's default action even where the suite itself runs with SIGINT ignored (a
    # background job of a non-interactive shell), which a child would inherit
    process = subprocess.Popen([sys.executable, "-m", "peterpan_format.cli", *map(str, args)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_output(tmp_path / "out", process)
    if group:  # as a terminal does: the whole process group
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    written = files(tmp_path / "out")
    assert 0 < len(written) < 12 and all(name.endswith(".ppan") for name in written), written
    for name in written:
        Image.open(tmp_path / "out" / name).load()  # every file left is complete
    again = ppan(*args)
    assert again.returncode == 0 and counts(again.stdout) == [12, 12 - len(written), len(written), 0]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_kill_9_leaves_no_worker_and_the_rerun_cleans_up(tmp_path):
    slow_batch(tmp_path)
    args = ["encode", tmp_path / "in", "-o", tmp_path / "out", "--masks", tmp_path / "masks", "--workers", "2"]
    process = subprocess.Popen([sys.executable, "-m", "peterpan_format.cli", *map(str, args)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for_output(tmp_path / "out", process)
    assert len(alive_in_group(process.pid)) >= 3  # the parent and its workers
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    while alive_in_group(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive_in_group(process.pid) == []

    (tmp_path / "out" / ".p11.ppan.a1b2c3d4.tmp").write_bytes(b"")  # as a killed worker leaves it
    again = ppan(*args)
    assert again.returncode == 0, again.stderr
    assert files(tmp_path / "out") == [f"p{i:02d}.ppan" for i in range(12)]
    for name in files(tmp_path / "out"):
        Image.open(tmp_path / "out" / name).load()


def alive_in_group(group: int) -> list[int]:
    """The processes of a process group that have not exited (zombies excluded)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def test_dask_gives_the_same_files(tree, capsys):
    distributed = pytest.importorskip("distributed")
    assert run("encode", tree / "in", "-o", tree / "local", "--masks", tree / "masks", capsys=capsys)[0] == 0
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        code, out, _ = run("encode", tree / "in", "-o", tree / "dask", "--masks", tree / "masks",
                           "--dask", cluster.scheduler_address, capsys=capsys)
        assert code == 0 and counts(out) == [3, 3, 0, 0]
        results = batch.batch([tree / "in"], tree / "api", client=client, masks_dir=tree / "masks",
                              background_scale=4, background_quality=70, feather=2, subject="lossless",
                              subject_coding="auto")
    assert sorted(r.status for r in results) == ["done"] * 3
    for name in files(tree / "local"):
        data = (tree / "local" / name).read_bytes()
        assert (tree / "dask" / name).read_bytes() == data == (tree / "api" / name).read_bytes()
