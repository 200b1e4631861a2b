"""gaf detect: a raw video → detections table, ActivityNet JSON and timeline, end to end on a real clip.

The detector is trained in the test on features `gaf extract` took from the
same clip (copied under several video ids, all with the same made-up
instances), so it has learnt where the instances of this clip are; `gaf
detect` must then extract with the checkpoint's settings, find them, and
write the results.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("av")

from gaf.cli import main  # noqa: E402
from gaf.config import from_dict  # noqa: E402
from gaf.data.video import probe  # noqa: E402
from gaf.detect import stream_for_model  # noqa: E402
from gaf.engine.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from gaf.engine.experiment import ExperimentConfig, experiment_from_dict  # noqa: E402
from gaf.engine.train import train  # noqa: E402
from gaf.errors import ConfigError  # noqa: E402

from conftest import VIDEOS_DIR  # noqa: E402

CLIP = VIDEOS_DIR / "v_Basketball_g01_c01.avi"  # 4.7 s, 320×240
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow, pytest.mark.skipif(not CLIP.exists(), reason="real clip not available")]

PIXELS = ["--short-side", "64", "--crop", "64"]
FPS, STRIDE, WINDOW = 10, 2, 8
CLASSES = ["Dribble", "Shoot"]
INSTANCES = [("Dribble", 0.6, 2.2), ("Shoot", 2.9, 4.2)]  # made up, seconds
TINY_MODEL = {
    "gaf": {"attention_dim": 16, "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4},
    "detector": {"embed_dim": 32, "num_levels": 4, "head_layers": 1, "stem_layers": 1},
    # the paper's losses: this test is about gaf detect's pipeline, and its 30 iterations were sized for them
    "loss": {"att": 0.0},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, train_seed: int) -> tuple[Path, Path]:
    """(checkpoint, features of CLIP) — a tiny detector trained on this clip's features."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_on_clip(tmp_path_factory.mktemp("detect_train"), train_seed)
    finally:
        torch.set_num_threads(threads)


def _train_on_clip(root: Path, seed: int) -> tuple[Path, Path]:
    with pytest.warns(UserWarning, match="UNTRAINED"):
        code = main(["extract", str(CLIP), "--out", str(root / "extracted"), "--fps", str(FPS), "--stride",
                     str(STRIDE), "--window", str(WINDOW), "--stream", "rgb", *PIXELS, "--no-progress"])
    assert code == 0
    feats = root / "extracted" / f"{CLIP.stem}.npy"
    duration = probe(CLIP).duration
    feat_dir = root / "features"
    feat_dir.mkdir()
    database = {}
    anns = [{"label": lab, "label_id": CLASSES.index(lab), "segment": [s, e]} for lab, s, e in INSTANCES]
    for split, count in (("validation", 6), ("test", 1)):
        for i in range(count):
            vid = f"clip_{split}_{i}"
            shutil.copy(feats, feat_dir / f"{vid}.npy")
            database[vid] = {"subset": split, "duration": duration, "fps": FPS, "annotations": anns}
    shutil.copy(root / "extracted" / "features.json", feat_dir)  # gaf extract's settings: recorded by training
    ann = root / "annotations.json"
    ann.write_text(json.dumps({"version": "test", "labels": CLASSES, "database": database}))
    cfg = from_dict(ExperimentConfig, {
        "name": "detect_tiny",
        "dataset": {"annotation_file": str(ann), "feature_dir": str(feat_dir), "fps": FPS,
                    "feature_stride": STRIDE, "num_frames": WINDOW, "input_dim": 1024, "max_seq_len": 32},
        "model": TINY_MODEL,
        "train": {"epochs": 30, "batch_size": 6, "lr": 3e-3, "warmup_epochs": 1, "seed": seed, "eval_at_end": False,
                  "device": "cpu"},
        "work_dir": str(root / "run"),
    })
    result = train(cfg, progress=False)
    assert result.final_checkpoint is not None
    return result.final_checkpoint, feats


@pytest.mark.learning
def test_detect_finds_the_trained_instances_and_writes_json_and_timeline(trained, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture,
                                                                         record_property) -> None:
    ckpt, extracted = trained
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="UNTRAINED"):  # seeded, untrained I3D: the same one `gaf extract` used
        code = main(["detect", str(CLIP), "--ckpt", str(ckpt), "--out", str(out),  # pixels: as recorded
                     "--score-threshold", "0.05", "--device", "cpu", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "start (s)" in printed and "label" in printed and "score" in printed
    rows = [r for r in (line.split() for line in printed.splitlines()) if len(r) == 5 and r[3] in CLASSES]
    assert len(rows) >= 1, printed

    # The features were extracted with the checkpoint's fps / stride / window, into out/features.
    index = json.loads((out / "features" / "features.json").read_text())
    assert (index["fps"], index["stride"], index["window"], index["streams"]) == (FPS, STRIDE, WINDOW, ["rgb"])
    assert (index["short_side"], index["crop"], index["weights_sha256"]) == (64, 64, {"rgb": None})
    np.testing.assert_allclose(np.load(out / "features" / f"{CLIP.stem}.npy"), np.load(extracted), atol=1e-5)

    doc = json.loads((out / f"{CLIP.stem}.json").read_text())
    assert set(doc) == {"version", "results", "external_data"}
    dets = doc["results"][CLIP.stem]
    duration = probe(CLIP).duration
    assert len(dets) == len(rows)
    for d in dets:
        s, e = d["segment"]
        assert 0.0 <= s < e <= duration + 1e-6
        assert d["label"] in CLASSES and 0.05 <= d["score"] <= 1.0
    # It learnt this clip: the best detection of each class lies on that class's instance.
    for label, s, e in INSTANCES:
        best = max((d for d in dets if d["label"] == label), key=lambda d: d["score"])
        ps, pe = best["segment"]
        tiou = max(0.0, min(e, pe) - max(s, ps)) / (max(e, pe) - min(s, ps))
        record_property(f"{label} best tIoU", tiou)
        assert tiou > 0.5, (label, best)

    png = (out / f"{CLIP.stem}_timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000

    # --top and a re-run that reuses the extracted features (no backbone built: no warning).
    code = main(["detect", str(CLIP), "--ckpt", str(ckpt), "--out", str(out), *PIXELS, "--top", "1",
                 "--score-threshold", "0.05", "--device", "cpu", "--no-progress"])
    assert code == 0
    assert len(json.loads((out / f"{CLIP.stem}.json").read_text())["results"][CLIP.stem]) == 1


def test_non_i3d_checkpoint_and_missing_video_exit_2_with_the_reason(trained, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    ckpt, _ = trained
    state = load_checkpoint(ckpt)
    state["meta"] = {**state["meta"], "in_dim": 64}
    state["config"]["dataset"]["input_dim"] = 64
    small = save_checkpoint(tmp_path / "dim64.pt", state)
    assert main(["detect", str(CLIP), "--ckpt", str(small), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "dim64.pt" in err and "64-channel" in err and "I3D" in err and "2048" in err
    assert not (tmp_path / "o" / "features").exists()  # refused before any extraction

    oracle_state = load_checkpoint(ckpt)
    oracle_state["config"]["model"]["gaf"]["oracle"] = True  # λ = ground truth: for measurement only
    oracle = save_checkpoint(tmp_path / "oracle.pt", oracle_state)
    assert main(["detect", str(CLIP), "--ckpt", str(oracle), "--out", str(tmp_path / "o2"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "oracle.pt" in err and "oracle" in err and "ground-truth" in err
    assert not (tmp_path / "o2").exists()

    missing = tmp_path / "no_such_video.mp4"
    assert main(["detect", str(missing), "--ckpt", str(ckpt), "--out", str(tmp_path / "o")]) == 2
    assert "no_such_video.mp4" in capsys.readouterr().err


def test_an_out_path_that_is_a_device_or_a_file_is_one_line_error_and_left_intact(trained, tmp_path: Path,
                                                                                   capsys: pytest.CaptureFixture
                                                                                   ) -> None:
    """Fixed: a NotADirectoryError traceback after the extraction began."""
    ckpt, _ = trained
    blocker = tmp_path / "results.json"
    blocker.write_text("{}")
    cases = [(blocker, "it is a file, not a folder")]
    if Path("/dev/null").exists():
        cases.append((Path("/dev/null"), "it is a character device, not a folder"))
    for out, why in cases:
        assert main(["detect", str(CLIP), "--ckpt", str(ckpt), "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err == f"gaf detect: error: {out}: cannot use as the output folder: {why}\n"
    assert blocker.read_text() == "{}"
    if Path("/dev/null").exists():
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_detect_refuses_preprocessing_other_than_the_training_features(trained, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    ckpt, _ = trained
    recorded = load_checkpoint(ckpt)["meta"]["extraction"]
    assert (recorded["short_side"], recorded["crop"], recorded["stride"], recorded["window"]) == (64, 64, STRIDE, WINDOW)
    out = tmp_path / "o"
    assert main(["detect", str(CLIP), "--ckpt", str(ckpt), "--out", str(out), "--crop", "100", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--crop 64, not 100" in err and err.count("error:") == 1
    other = tmp_path / "rgb_other.pt"
    torch.save({"w": torch.zeros(1)}, other)
    assert main(["detect", str(CLIP), "--ckpt", str(ckpt), "--out", str(out), "--backbone-weights", str(other),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "UNTRAINED backbone" in err and "rgb_other.pt" in err
    assert not out.exists()  # refused before any extraction


def test_training_refuses_a_config_that_misreads_extracted_features(trained, tmp_path: Path) -> None:
    ckpt, _ = trained
    cfg = load_checkpoint(ckpt)["config"]
    cfg["dataset"]["feature_stride"] = STRIDE * 2
    cfg["work_dir"] = str(tmp_path / "run")
    with pytest.raises(ConfigError, match=r"dataset.feature_stride: 4, but .*features.json says .* stride 2"):
        train(experiment_from_dict(cfg, where="test"), progress=False)
    assert not (tmp_path / "run" / "final.pt").exists()


def test_stream_follows_the_model_input_width() -> None:
    assert stream_for_model(2048, 2048, None, where="m.pt") == "both"
    assert stream_for_model(1024, 2048, [0, 1024], where="m.pt") == "rgb"
    assert stream_for_model(1024, 2048, [1024, 2048], where="m.pt") == "flow"
    assert stream_for_model(1024, 1024, None, where="m.pt") == "rgb"
    assert stream_for_model(1024, 1024, None, where="m.pt", stream="flow") == "flow"
    with pytest.raises(ConfigError, match="m.pt.*512-channel"):
        stream_for_model(512, 512, None, where="m.pt")
    with pytest.raises(ConfigError, match="2048"):
        stream_for_model(1024, 1024, None, where="m.pt", stream="both")


def test_the_python_api_detects_what_the_command_writes(trained, tmp_path: Path) -> None:
    """gaf.load_detector(ckpt).detect(video) is gaf detect's code path: the same detections, with λ."""
    import gaf

    ckpt, _ = trained
    out = tmp_path / "cli"
    with pytest.warns(UserWarning, match="UNTRAINED"):
        assert main(["detect", str(CLIP), "--ckpt", str(ckpt), "--out", str(out), "--score-threshold", "0.05",
                     "--device", "cpu", "--no-progress"]) == 0
    written = json.loads((out / f"{CLIP.stem}.json").read_text())["results"][CLIP.stem]
    with pytest.warns(UserWarning, match="UNTRAINED"):
        dets = gaf.load_detector(ckpt, device="cpu").detect(CLIP, score_threshold=0.05)
    assert len(dets) == len(written) >= 1
    for d, w in zip(dets, written):
        assert [d.start, d.end] == pytest.approx(w["segment"], abs=1e-6) and d.label == w["label"]
        assert d.score == pytest.approx(w["score"], abs=1e-6) and 0.0 <= d.attention <= 1.0
    assert dets.attention is not None and dets.attention_times[-1] <= probe(CLIP).duration + 1.0
