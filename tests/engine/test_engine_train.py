"""The training engine end to end through the public CLI and API:
learning, attention, resume, and eval reproducing the training-time mAP."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gaf.cli import main
from gaf.config import from_dict
from gaf.engine.checkpoint import load_checkpoint
from gaf.engine.experiment import ExperimentConfig
from gaf.engine.train import train

pytestmark = pytest.mark.slow

TINY_MODEL = {
    "gaf": {"attention_dim": 16, "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4},
    "detector": {"embed_dim": 32, "num_levels": 4, "head_layers": 1, "stem_layers": 1},
}


def tiny_config(dataset: dict, tmp_path, **train) -> ExperimentConfig:
    data = {
        "name": "tiny",
        "dataset": dataset,
        "model": TINY_MODEL,
        "train": {"epochs": 12, "batch_size": 4, "lr": 3e-3, "warmup_epochs": 1, "seed": 1, **train},
        "eval": {"tious": [0.3, 0.5, 0.7], "batch_size": 8},
        "work_dir": str(tmp_path / "run"),
    }
    return from_dict(ExperimentConfig, data)


def train_and_score(cfg: ExperimentConfig, record_property):
    """Train ``cfg``; returns the run and its mAP per tIoU, with mAP@0.5 recorded for `make test-seeds`."""
    result = train(cfg, progress=False)
    assert result.metrics is not None
    mAP = dict(zip(result.metrics["tious"], result.metrics["mAP"]))
    record_property("mAP@0.5", mAP[0.5])
    return result, mAP


def attention_gap(result, cfg: ExperimentConfig) -> float:
    """Mean λ inside the ground-truth instances minus outside them, over the test videos, of a run's final model."""
    from gaf.data.features import FeatureDataset, collate
    from gaf.engine.loading import load_detector

    model, _ = load_detector(result.final_checkpoint)
    ds = FeatureDataset(cfg.dataset, "test", training=False)
    inside, outside = [], []
    for i in range(len(ds)):
        item = ds[i]
        batch = collate([item])
        with torch.no_grad():
            lam = model(batch["features"], batch["mask"])["attention"][0].numpy()
        steps = np.arange(len(lam))
        hit = np.zeros(len(lam), bool)
        for s, e in item["segments"].tolist():
            hit |= (steps >= s) & (steps <= e)
        inside.append(lam[hit])
        outside.append(lam[~hit])
    return float(np.concatenate(inside).mean() - np.concatenate(outside).mean())


def write_yaml(cfg: ExperimentConfig, path) -> str:
    path.write_text(cfg.to_yaml())
    return str(path)


@pytest.mark.learning
def test_training_learns_and_attention_marks_actions(pulse_dataset, train_seed, tmp_path, record_property):
    cfg = tiny_config(pulse_dataset, tmp_path, epochs=80, seed=train_seed)
    result, mAP = train_and_score(cfg, record_property)
    assert mAP[0.5] > 0.8, result.metrics

    # λ is higher inside ground-truth instances than outside, on the test videos.
    gap = attention_gap(result, cfg)
    record_property("λ in - out", gap)
    assert gap > 0.3

    # The work dir holds everything a run is traced by.
    run = result.work_dir
    for name in ("config.yaml", "log.txt", "latest.pt", "final.pt", "history.json", "predictions.json",
                 "metrics.json", "report/report.html"):
        assert (run / name).exists(), name


@pytest.mark.learning
def test_the_transformer_backbone_learns_through_gaf_train(pulse_dataset, train_seed, tmp_path, record_property):
    cfg = tiny_config(pulse_dataset, tmp_path, epochs=40, seed=train_seed)
    cfg.model.detector.backbone = "transformer"
    cfg.model.detector.attention_heads = 4
    cfg.model.detector.attention_window = 9
    result, mAP = train_and_score(cfg, record_property)
    assert mAP[0.5] > 0.8, result.metrics
    weights = torch.load(result.final_checkpoint, weights_only=True)["model"]
    assert any(k.endswith("pyramid.branch.0.attn.qkv.weight") for k in weights)  # the transformer was trained


@pytest.mark.learning
def test_the_sgp_backbone_with_the_trident_head_learns_through_gaf_train(pulse_dataset, train_seed, tmp_path,
                                                                        record_property):
    cfg = tiny_config(pulse_dataset, tmp_path, epochs=40, seed=train_seed)
    cfg.model.detector.backbone = "sgp"
    cfg.model.detector.sgp_window = 3
    cfg.model.detector.boundary_head = "trident"
    cfg.model.detector.norm = "layer"  # as bench/peer.py measured it best (group norm: every other training test)
    cfg.model.loss.reg_mode = "diou"  # as thumos14_i3d ships it (GIoU: every other training test)
    result, mAP = train_and_score(cfg, record_property)
    assert mAP[0.5] > 0.8, result.metrics
    weights = torch.load(result.final_checkpoint, weights_only=True)["model"]
    assert any(k.endswith("pyramid.branch.0.conv_kw.weight") for k in weights)  # the SGP layers were trained
    assert any(k.endswith("trident.centre.weight") for k in weights)
    assert any(k.endswith("detector.stem.0.norm.norm.weight") for k in weights)  # the detector's own blocks used the per-step layer norm


@pytest.mark.learning
def test_the_shipped_thumos_detector_learns_through_gaf_train(pulse_dataset, train_seed, tmp_path, record_property):
    """thumos14_i3d's detector: SGP, regression head, per-step layer norm (its towers and heads packed over the
    levels in one pass), DIoU, and GAF's linear-attention context; λ marks the actions at the end of training."""
    cfg = tiny_config(pulse_dataset, tmp_path, epochs=40, seed=train_seed)
    cfg.model.detector.backbone = "sgp"
    cfg.model.detector.sgp_window = 3
    cfg.model.detector.boundary_head = "regression"
    cfg.model.detector.norm = "layer"
    cfg.model.loss.reg_mode = "diou"
    cfg.model.gaf.context = "linear"
    result, mAP = train_and_score(cfg, record_property)
    assert mAP[0.5] > 0.8, result.metrics
    weights = torch.load(result.final_checkpoint, weights_only=True)["model"]
    assert any(k.endswith("segment.context.qkv.weight") for k in weights)  # the linear context was trained

    from gaf.engine.loading import load_detector

    assert load_detector(result.final_checkpoint)[0].detector.packs_levels  # the one-pass towers and heads
    gap = attention_gap(result, cfg)
    record_property("λ in - out", gap)
    assert gap > 0.3


@pytest.mark.learning
def test_the_parameter_free_maxpool_pyramid_learns_through_gaf_train(pulse_dataset, train_seed, tmp_path,
                                                                     record_property):
    cfg = tiny_config(pulse_dataset, tmp_path, epochs=40, seed=train_seed)
    cfg.model.detector.backbone = "maxpool"
    # TemporalMaxer's layout: two conv layers before the pooling and in each tower (the pyramid adds no layer; with
    # one of each, as in the other tests' tiny model, mAP@0.5 fell to 0.82 on seeds 0 and 2)
    cfg.model.detector.stem_layers = 2
    cfg.model.detector.head_layers = 2
    result, mAP = train_and_score(cfg, record_property)
    assert mAP[0.5] > 0.8, result.metrics
    weights = torch.load(result.final_checkpoint, weights_only=True)["model"]
    assert not any(".pyramid." in k or ".downs." in k for k in weights)  # only the stem and the heads learned


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(pulse_dataset, tmp_path):
    straight = tiny_config(pulse_dataset, tmp_path / "a", epochs=3, eval_at_end=False)
    train(straight, progress=False)

    resumed = tiny_config(pulse_dataset, tmp_path / "b", epochs=3, eval_at_end=False)
    first = train(resumed, stop_after_epochs=1, progress=False)
    assert first.final_checkpoint is None and first.epochs_done == 1
    train(resumed, resume=True, progress=False)

    a = load_checkpoint(tmp_path / "a" / "run" / "final.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "run" / "final.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_cli_train_then_eval_reproduces_the_mAP(pulse_dataset, tmp_path, capsys):
    cfg = tiny_config(pulse_dataset, tmp_path, epochs=4)
    config = write_yaml(cfg, tmp_path / "tiny.yaml")
    assert main(["train", config, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "mAP" in out
    run = tmp_path / "run"
    trained = json.loads((run / "metrics.json").read_text())

    pred = tmp_path / "again.json"
    assert main(["eval", "--ckpt", str(run / "final.pt"), "--out", str(pred), "--no-progress",
                 "--work-dir", str(tmp_path / "ev")]) == 0
    again = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert again["mAP"] == pytest.approx(trained["mAP"], abs=1e-9)
    assert json.loads(pred.read_text())["results"]

    # The same mAP from gaf score on the written predictions.
    score_json = tmp_path / "score.json"
    assert main(["score", cfg.dataset.annotation_file, str(pred), "--subset", "test", "--tious", "0.3,0.5,0.7",
                 "--json", str(score_json)]) == 0
    assert json.loads(score_json.read_text())["mAP"] == pytest.approx(trained["mAP"], abs=1e-9)

    # Segment voting moves boundaries only: the same detections (class, score) per video, some segments changed.
    voted = tmp_path / "voted.json"
    assert main(["eval", "--ckpt", str(run / "final.pt"), "--out", str(voted), "--no-progress", "--no-report",
                 "--work-dir", str(tmp_path / "ev_vote"), "--set", "eval.voting_iou=0.7"]) == 0
    plain_res, voted_res = json.loads(pred.read_text())["results"], json.loads(voted.read_text())["results"]
    assert plain_res.keys() == voted_res.keys()
    moved = 0
    for vid in plain_res:
        a, b = ([(d["label"], d["score"], tuple(d["segment"])) for d in r[vid]] for r in (plain_res, voted_res))
        assert sorted(x[:2] for x in a) == sorted(x[:2] for x in b)
        moved += len(set(a) - set(b))
    assert moved > 0
    capsys.readouterr()
    assert main(["eval", "--ckpt", str(run / "final.pt"), "--no-progress", "--no-report", "--work-dir",
                 str(tmp_path / "ev_bad"), "--set", "eval.voting_iou=1.5"]) == 2
    assert "eval.voting_iou" in capsys.readouterr().err


def test_resume_refuses_a_changed_config_and_a_fresh_run_refuses_an_old_dir(pulse_dataset, tmp_path, capsys):
    cfg = tiny_config(pulse_dataset, tmp_path, epochs=2, eval_at_end=False)
    config = write_yaml(cfg, tmp_path / "tiny.yaml")
    assert main(["train", config, "--stop-after", "1", "--no-progress"]) == 0
    assert main(["train", config, "--no-progress"]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["train", config, "--resume", "--set", "train.lr=0.1", "--no-progress"]) == 2
    assert "train.lr: 0.003 -> 0.1" in capsys.readouterr().err
    assert main(["train", config, "--resume", "--no-progress"]) == 0


def test_train_threads_hold_for_the_run_may_change_on_resume_and_the_callers_setting_comes_back(
        pulse_dataset, tmp_path, capsys):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = tiny_config(pulse_dataset, tmp_path, epochs=2, threads=1)
        config = write_yaml(cfg, tmp_path / "tiny.yaml")
        assert main(["train", config, "--stop-after", "1", "--no-progress"]) == 0
        assert torch.get_num_threads() == 2
        assert main(["train", config, "--resume", "--set", "train.threads=3", "--no-progress"]) == 0
        assert torch.get_num_threads() == 2
        log = (tmp_path / "run" / "log.txt").read_text()
        assert "device cpu, 1 CPU thread(s)" in log and "device cpu, 3 CPU thread(s)" in log
        assert log.index("1 CPU thread(s)") < log.index("3 CPU thread(s)")
    finally:
        torch.set_num_threads(before)


def test_the_lambda_gradient_probe_and_health_never_change_what_is_trained(pulse_dataset, tmp_path, one_thread):
    """The probes only measure: a run probing λ's gradients at every batch and one never probing train the
    same weights (so a config may probe as rarely as it likes, demo.yaml once per epoch)."""
    weights = {}
    for every, items in ((1, 16), (0, 0)):
        cfg = tiny_config(pulse_dataset, tmp_path / f"p{every}", epochs=2, eval_at_end=False,
                          grad_probe_every=every, health_items=items)
        done = train(cfg, progress=False)
        weights[every] = load_checkpoint(done.final_checkpoint)["model"]
        history = json.loads((done.work_dir / "history.json").read_text())
        assert any(k.startswith("grad_lambda/") for k in history[-1]) == bool(every)
    assert weights[1].keys() == weights[0].keys()
    for name in weights[0]:
        assert torch.equal(weights[1][name], weights[0][name]), name


def test_bad_config_key_is_reported_with_its_path(pulse_dataset, tmp_path, capsys):
    cfg = tiny_config(pulse_dataset, tmp_path)
    config = write_yaml(cfg, tmp_path / "tiny.yaml")
    assert main(["train", config, "--set", "model.detector.embed=3"]) == 2
    err = capsys.readouterr().err
    assert "tiny.yaml.model.detector: unknown key(s) 'embed'" in err


@pytest.mark.learning
def test_eval_fuses_an_rgb_and_a_flow_model(pulse_dataset, train_seed, tmp_path, capsys, record_property):
    """Two streams trained on channel slices of the same files; --fuse averages their outputs."""
    runs = {}
    for name, channels in (("rgb", [0, 8]), ("flow", [8, 16])):
        cfg = tiny_config({**pulse_dataset, "channels": channels}, tmp_path / name, epochs=6, seed=train_seed)
        runs[name] = train(cfg, progress=False)
    rgb, flow = runs["rgb"].final_checkpoint, runs["flow"].final_checkpoint

    assert main(["eval", "--ckpt", str(rgb), "--fuse", str(flow), "--work-dir", str(tmp_path / "fused"),
                 "--no-progress", "--no-report"]) == 0
    fused = json.loads((tmp_path / "fused" / "metrics.json").read_text())
    single = {k: r.metrics["average_mAP"] for k, r in runs.items()}
    # The pulses of class 0 live in channels 0-3 and of class 1 in 4-7: only the "rgb" slice sees them,
    # so the fused model must stay far above the flow-only model.
    record_property("fused - flow", fused["average_mAP"] - single["flow"])
    assert fused["average_mAP"] > single["flow"] + 0.2

    # Fusing a model with itself changes nothing.
    assert main(["eval", "--ckpt", str(rgb), "--fuse", str(rgb), "--work-dir", str(tmp_path / "self"),
                 "--no-progress", "--no-report"]) == 0
    itself = json.loads((tmp_path / "self" / "metrics.json").read_text())
    assert itself["mAP"] == pytest.approx(runs["rgb"].metrics["mAP"], abs=1e-9)


def test_a_checkpoint_from_another_model_config_fails_naming_the_keys(pulse_dataset, tmp_path, capsys):
    cfg = tiny_config(pulse_dataset, tmp_path, epochs=1, eval_at_end=False)
    result = train(cfg, progress=False)
    other = tiny_config(pulse_dataset, tmp_path)
    other.model.gaf.enabled = False  # the plain detector: no gaf.* parameters
    other.model.detector.embed_dim = 16
    code = main(["eval", write_yaml(other, tmp_path / "other.yaml"), "--ckpt", str(result.final_checkpoint),
                 "--no-report", "--no-progress", "--work-dir", str(tmp_path / "ev")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert str(result.final_checkpoint) in err and "does not fit the model config" in err
    assert "unexpected keys: gaf." in err and "shape mismatches:" in err and "vs model" in err


def test_bench_peer_refuses_a_stored_run_of_an_earlier_model(pulse_dataset, tmp_path):
    """bench/peer.py tables stored runs beside new ones only when their checkpoint loads into today's model."""
    import importlib.util
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "bench" / "peer.py"
    spec = importlib.util.spec_from_file_location("peer_bench", bench)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    cfg = tiny_config(pulse_dataset, tmp_path, epochs=1, eval_at_end=False)
    run = train(cfg, progress=False).final_checkpoint.parent
    peer.check_current(run)  # today's model: reused
    state = load_checkpoint(run / "final.pt")
    key = next(k for k in state["model"] if k.endswith("norm.weight"))
    state["model"][key.replace("norm.weight", "norm.norm.weight")] = state["model"].pop(key)  # another layout
    torch.save(state, run / "final.pt")
    with pytest.raises(SystemExit, match="trained by an earlier model") as err:
        peer.check_current(run)
    assert str(run) in str(err.value) and "norm.norm.weight" in str(err.value)


@pytest.mark.parametrize("stage", ["frame", "segment"])
def test_a_run_stopped_mid_epoch_resumes_from_that_batch_exactly(pulse_dataset, tmp_path, monkeypatch, stage):
    import gaf.engine.loop as loop

    straight = tiny_config(pulse_dataset, tmp_path / "a", epochs=2, eval_at_end=False, save_every_iters=1)
    train(straight, progress=False)

    # Stop the second run right after the mid-epoch checkpoint of epoch 2, `stage`, batch 2 (of 3).
    real_save = loop.save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        pos = state.get("position")
        if pos and pos["epoch"] == 1 and ["frame", "segment"][pos["stage"]] == stage and pos["iter"] == 2:
            raise KeyboardInterrupt  # as if killed here

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    resumed = tiny_config(pulse_dataset, tmp_path / "b", epochs=2, eval_at_end=False, save_every_iters=1)
    with pytest.raises(KeyboardInterrupt):
        train(resumed, progress=False)
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    state = load_checkpoint(tmp_path / "b" / "run" / "latest.pt")
    assert state["epoch"] == 1 and state["position"]["iter"] == 2

    train(resumed, resume=True, progress=False)
    a = load_checkpoint(tmp_path / "a" / "run" / "final.pt")
    b = load_checkpoint(tmp_path / "b" / "run" / "final.pt")
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=1e-6, msg=key)
    # The logged epoch losses are those of the uninterrupted run too (running sums were checkpointed).
    for ra, rb in zip(a["history"], b["history"]):
        assert {k: v for k, v in ra.items() if k != "seconds"} == pytest.approx(
            {k: v for k, v in rb.items() if k != "seconds"}, rel=1e-6)
    assert "resumed from" in (tmp_path / "b" / "run" / "log.txt").read_text()


def test_auto_regression_ranges_take_the_base_from_the_training_instances(pulse_dataset, tmp_path):
    """``model.detector.regression_ranges: auto``: a configured base shorter than the 5th percentile of the
    training instances' half-lengths (steps) is raised to the power of two above it (computed here by hand from
    the annotation), never lowered; it is in the checkpoint's meta and the log, and a resumed run resolves it
    alike (same weights)."""
    import json

    import numpy as np

    from gaf.data.sizing import auto_range_base

    assert auto_range_base(np.array([2.0] * 19 + [500.0]), 4.0) == 4.0  # half 1 <= 4: kept, never lowered
    assert auto_range_base(np.array([20.0] * 20), 4.0) == 16.0  # half 10 > 4 -> 2**4
    assert auto_range_base(np.array([16.0] * 20), 8.0) == 8.0  # half 8 fits level 0 already
    assert auto_range_base(np.zeros(0), 4.0) == 4.0

    ann = json.loads(open(pulse_dataset["annotation_file"]).read())["database"]
    step_seconds = pulse_dataset["feature_stride"] / pulse_dataset["fps"]
    lengths = [(a["segment"][1] - a["segment"][0]) / step_seconds
               for v in ann.values() if v["subset"] == "validation" for a in v["annotations"]]
    half5 = np.percentile(0.5 * np.array(lengths), 5)
    base = 1.0  # configured under the pulses' shortest instances, so auto raises it
    assert half5 > base
    expected = float(2 ** int(np.ceil(np.log2(half5))))

    def run(name: str, **train_kw):
        cfg = tiny_config(pulse_dataset, tmp_path / name, epochs=2, eval_at_end=False, **train_kw)
        cfg.model.detector.regression_ranges = "auto"
        cfg.model.detector.regression_range_base = base
        return cfg

    straight = run("a")
    train(straight, progress=False)
    state = load_checkpoint(tmp_path / "a" / "run" / "final.pt")
    assert state["meta"]["regression_range_base"] == expected
    assert f"regression_range_base {expected:g} steps" in (tmp_path / "a" / "run" / "log.txt").read_text()
    resumed = run("b")
    train(resumed, stop_after_epochs=1, progress=False)
    train(resumed, resume=True, progress=False)
    b = load_checkpoint(tmp_path / "b" / "run" / "final.pt")["model"]
    for key, value in state["model"].items():
        torch.testing.assert_close(value, b[key], rtol=0, atol=1e-6, msg=key)


def test_train_refuses_annotation_fps_other_than_the_extraction_rate(pulse_dataset, tmp_path, capsys):
    """Features of ``gaf extract`` (features.json) are at its --fps; an annotation giving videos their own
    rate (e.g. ``gaf data import --videos``: the container's 25 fps) would place every step at the wrong time
    unless dataset.fps / force_fps say the extraction's rate: one line naming the video and both rates."""
    import json
    from pathlib import Path

    from gaf.cli import main

    feats = Path(pulse_dataset["feature_dir"])
    (feats / "features.json").write_text(json.dumps({"fps": 5.0, "stride": pulse_dataset["feature_stride"],
                                                     "window": pulse_dataset["num_frames"], "videos": {}}))
    cfg = tiny_config(pulse_dataset, tmp_path, epochs=1, eval_at_end=False)
    cfg.dataset.fps = None  # each video's rate from the annotation (10 fps)
    path = write_yaml(cfg, tmp_path / "cfg.yaml")
    assert main(["train", path, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "fps 10" in err and "5 fps" in err and "force_fps: true" in err and "video " in err
    fixed = ["--set", "dataset.fps=5", "--set", "dataset.force_fps=true", "--work-dir", str(tmp_path / "ok")]
    assert main(["train", path, "--no-progress", *fixed]) == 0
