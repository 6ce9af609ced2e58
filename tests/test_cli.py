"""The ppan command, driven as a subprocess on folders of shared photos."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_DATA, as_array

PHOTOS = ["ccp_0741", "hsd-232", "cat_group0421_jpeg"]


def ppan(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "peterpan_format.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture
def photos(tmp_path):
    """in/ with three photos (one in a subfolder) and a corrupt file; masks/ beside it."""
    if not SHARED_DATA.exists():
        pytest.skip("shared data not found")
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "masks").mkdir()
    for i, name in enumerate(PHOTOS):
        folder = tmp_path / "in" / ("sub" if i == 2 else "")
        shutil.copy(SHARED_DATA / "images" / f"{name}.jpg", folder)
        shutil.copy(SHARED_DATA / "masks" / f"{name}.png", tmp_path / "masks")
    return tmp_path


def outputs(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_encode_folder_resume_and_force(photos):
    result = ppan("encode", photos / "in", "-o", photos / "out", "--masks", photos / "masks")
    assert result.returncode == 0, result.stderr
    assert outputs(photos / "out") == ["ccp_0741.ppan", "hsd-232.ppan", "sub/cat_group0421_jpeg.ppan"]
    summary = result.stdout.splitlines()[-1].split()
    assert summary[:4] == ["3", "3", "0", "0"]  # files, done, skipped, failed
    for name, path in zip(PHOTOS, ["ccp_0741.ppan", "hsd-232.ppan", "sub/cat_group0421_jpeg.ppan"]):
        mask = np.asarray(Image.open(photos / "masks" / f"{name}.png")) > 0
        original = as_array(Image.open(SHARED_DATA / "images" / f"{name}.jpg").convert("RGB"))
        np.testing.assert_array_equal(as_array(Image.open(photos / "out" / path))[mask], original[mask])

    before = {p: (photos / "out" / p).stat().st_mtime_ns for p in outputs(photos / "out")}
    again = ppan("encode", photos / "in", "-o", photos / "out", "--masks", photos / "masks")
    assert again.returncode == 0 and again.stdout.splitlines()[-1].split()[:4] == ["3", "0", "3", "0"]
    assert before == {p: (photos / "out" / p).stat().st_mtime_ns for p in before}

    forced = ppan("encode", photos / "in", "-o", photos / "out", "--masks", photos / "masks", "--force")
    assert forced.returncode == 0 and forced.stdout.splitlines()[-1].split()[:4] == ["3", "3", "0", "0"]


def test_corrupt_input_among_good_ones(photos):
    (photos / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    result = ppan("encode", photos / "in", "-o", photos / "out", "--masks", photos / "masks", "--workers", "2")
    assert result.returncode == 1
    assert "broken.jpg" in result.stderr
    assert result.stdout.splitlines()[-1].split()[:4] == ["4", "3", "0", "1"]
    assert len(outputs(photos / "out")) == 3


def test_never_overwrites_without_force(photos):
    target = photos / "in" / "ccp_0741.ppan"
    target.write_bytes(b"mine")
    os.utime(target, (0, 0))  # older than the input
    result = ppan("encode", photos / "in" / "ccp_0741.jpg", "--mask", photos / "masks" / "ccp_0741.png")
    assert "use --force" in result.stderr
    assert target.read_bytes() == b"mine"


def test_info_json_schema(photos):
    ppan("encode", photos / "in" / "hsd-232.jpg", "--mask", photos / "masks" / "hsd-232.png", "-o", photos)
    result = ppan("info", "--json", photos / "hsd-232.ppan")
    info = json.loads(result.stdout)
    assert {"path", "format", "version", "width", "height", "mode", "background_scale", "feather",
            "file_bytes", "bits_per_pixel", "subject", "background", "mask", "metadata", "chunks"} <= set(info)
    assert info["format"] == "PPAN" and info["mode"] == "RGB"
    assert 0 < info["subject"]["area"] < 1
    assert [c["type"] for c in info["chunks"]] == ["HEAD", "BGND", "MASK", "SUBJ", "DONE"]
    assert sum(c["bytes"] + 12 for c in info["chunks"]) + 8 == info["file_bytes"]
    assert ppan("info", photos / "masks" / "hsd-232.png").returncode == 1


def test_jpeg_inputs_keep_their_coefficients_unless_told(photos):
    args = [photos / "in" / "hsd-232.jpg", "--mask", photos / "masks" / "hsd-232.png"]
    ppan("encode", *args, "-o", photos / "kept")
    ppan("encode", *args, "-o", photos / "pixels", "--subject-coding", "cm")
    ppan("encode", *args, "-o", photos / "near", "--subject", "near-lossless", "--max-error", "6",
         "--subject-coding", "cm")
    kept, pixels, near = (json.loads(ppan("info", "--json", photos / d / "hsd-232.ppan").stdout)
                          for d in ("kept", "pixels", "near"))
    assert [f["subject"]["coding"] for f in (kept, pixels, near)] == ["jpeg", "cm", "cm-near"]
    assert kept["file_bytes"] < pixels["file_bytes"] and near["file_bytes"] < pixels["file_bytes"]


def test_decode_to_png(photos):
    ppan("encode", photos / "in", "-o", photos / "out", "--masks", photos / "masks")
    result = ppan("decode", photos / "out", "-o", photos / "png")
    assert result.returncode == 0
    assert outputs(photos / "png") == ["ccp_0741.png", "hsd-232.png", "sub/cat_group0421_jpeg.png"]
    png = Image.open(photos / "png" / "hsd-232.png")
    np.testing.assert_array_equal(as_array(png), as_array(Image.open(photos / "out" / "hsd-232.ppan")))


def test_compare_writes_a_view(photos):
    result = ppan("compare", photos / "in" / "ccp_0741.jpg", "--mask", photos / "masks" / "ccp_0741.png",
                  "-o", photos / "view.png")
    assert result.returncode == 0, result.stderr
    assert "jpeg" in result.stdout and "webp" in result.stdout
    name, _, _, subject_psnr, _ = result.stdout.splitlines()[1].split()
    assert (name, subject_psnr) == ("ppan", "inf")  # a JPEG input keeps its subject exactly
    with Image.open(photos / "view.png") as view:
        assert view.width == 5 * 336


def test_ctrl_c_leaves_no_partial_output(photos):
    many = photos / "many"
    many.mkdir()
    for i in range(40):
        shutil.copy(SHARED_DATA / "images" / "ccp_0741.jpg", many / f"p{i:02d}.jpg")
        shutil.copy(SHARED_DATA / "masks" / "ccp_0741.png", photos / "masks" / f"p{i:02d}.png")
    process = subprocess.Popen([sys.executable, "-m", "peterpan_format.cli", "encode", str(many),
                                "-o", str(photos / "out"), "--masks", str(photos / "masks")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((photos / "out").glob("*.ppan")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    written = outputs(photos / "out")
    assert 0 < len(written) < 40
    assert all(name.endswith(".ppan") for name in written), written  # no temporary files
    for name in written:
        Image.open(photos / "out" / name).load()  # every file left is complete


def test_dask_cluster_gives_identical_files(photos):
    distributed = pytest.importorskip("distributed")
    from peterpan_format.batch import batch

    local = batch([photos / "in"], photos / "local", masks_dir=photos / "masks", background_scale=3)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote = batch([photos / "in"], photos / "dask", client=client, masks_dir=photos / "masks",
                       background_scale=3)
    assert [r.status for r in local] == [r.status for r in remote]
    for name in outputs(photos / "local"):
        assert (photos / "local" / name).read_bytes() == (photos / "dask" / name).read_bytes()


def test_bad_options_stop_before_any_file(photos):
    result = ppan("encode", photos / "in", "-o", photos / "out", "--masks", photos / "masks", "--max-error", "3")
    assert result.returncode != 0 and "max_error goes with subject='near-lossless'" in result.stderr
    assert not (photos / "out").exists()
