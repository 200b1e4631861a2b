"""Several processes (torchrun, gloo on CPU) and hard kills: the run's result must not depend on either.

* 2 processes train to the same weights as 1 process with the same global
  batch (an uneven one: 5 items split 3 + 2, and a last batch of 2 split
  1 + 1), and `gaf eval` over 2 processes gives the same mAP;
* a training process killed with SIGKILL mid-run, then resumed, ends with
  the weights and metrics of an uninterrupted run;
* a process killed while writing a checkpoint leaves a loadable one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gaf.engine.checkpoint import load_checkpoint
from gaf.engine.distributed import DistContext
from gaf.engine.loop import epoch_batches

pytestmark = pytest.mark.slow

TINY = {
    "gaf": {"attention_dim": 16, "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4},
    "detector": {"embed_dim": 32, "num_levels": 4, "head_layers": 1, "stem_layers": 1},
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1")
    return env


def _config(path: Path, dataset: dict, **train) -> Path:
    import yaml

    doc = {"name": "tiny", "dataset": dataset, "model": TINY,
           "train": {"epochs": 3, "batch_size": 5, "lr": 3e-3, "warmup_epochs": 1, "seed": 3, **train},
           "eval": {"tious": [0.3, 0.5, 0.7], "batch_size": 4, "report_videos": 1}}
    path.write_text(yaml.safe_dump(doc))
    return path


def _gaf(*args: str, nproc: int = 1, timeout: float = 300) -> subprocess.CompletedProcess:
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "gaf", *args]
    else:
        cmd = [sys.executable, "-m", "gaf", *args]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def _assert_same_weights(a: Path, b: Path, atol: float) -> None:
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k].double() - wb[k].double()).abs().max()) if wa[k].numel() else 0.0 for k in wa)
    assert worst <= atol, f"largest weight difference {worst:.3g}"


def test_global_batches_are_split_contiguously_and_identically_on_every_rank():
    batches = epoch_batches(12, 5, seed=3, epoch=1, stage="segment", world_size=2)
    assert [len(b) for b in batches] == [5, 5, 2]
    assert sorted(i for b in batches for i in b) == list(range(12))
    parts = [[DistContext(rank=r, world_size=2).split(b) for b in batches] for r in (0, 1)]
    assert [len(p) for p in parts[0]] == [2, 2, 1] and [len(p) for p in parts[1]] == [3, 3, 1]
    assert [a + b for a, b in zip(*parts)] == batches
    # A last batch smaller than the number of ranks is dropped (only with several ranks).
    assert [len(b) for b in epoch_batches(11, 5, seed=3, epoch=1, stage="segment", world_size=2)] == [5, 5]
    assert [len(b) for b in epoch_batches(11, 5, seed=3, epoch=1, stage="segment", world_size=1)] == [5, 5, 1]
    assert DistContext(rank=1, world_size=3).shard(list("abcdefg")) == ["b", "e"]


@pytest.mark.learning
def test_two_gloo_processes_train_the_weights_of_one_process_and_evaluate_the_same(pulse_dataset, train_seed,
                                                                                  tmp_path, record_property):
    cfg = _config(tmp_path / "tiny.yaml", pulse_dataset, save_every_iters=2, seed=train_seed)  # + mid-epoch saves (gathered)
    _gaf("train", str(cfg), "--work-dir", str(tmp_path / "one"), "--no-progress")
    two = _gaf("train", str(cfg), "--work-dir", str(tmp_path / "two"), "--no-progress", nproc=2)
    assert "2 processes" in (tmp_path / "two" / "log.txt").read_text()
    assert two.stdout.count("work dir:") == 1  # rank 0 alone prints

    _assert_same_weights(tmp_path / "one" / "final.pt", tmp_path / "two" / "final.pt", atol=2e-5)
    h1 = json.loads((tmp_path / "one" / "history.json").read_text())
    h2 = json.loads((tmp_path / "two" / "history.json").read_text())
    assert len(h1) == len(h2) == 3 and "frame/cvae" in h2[0]  # both GAF stages ran under DDP
    for r1, r2 in zip(h1, h2):
        for key in ("frame/cvae", "segment/total", "segment/ai", "segment/rep"):
            assert r2[key] == pytest.approx(r1[key], rel=1e-4, abs=1e-5), key
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m2["mAP"] == pytest.approx(m1["mAP"], abs=1e-4)
    record_property("mAP@0.3", m1["mAP"][0])
    assert m1["mAP"][0] > 0.05  # a real (if short) training run, not an empty prediction set

    # Distributed evaluation: the videos are shared out and gathered; same predictions, same mAP.
    ckpt = tmp_path / "one" / "final.pt"
    _gaf("eval", "--ckpt", str(ckpt), "--work-dir", str(tmp_path / "eval1"), "--no-report", "--no-progress")
    _gaf("eval", "--ckpt", str(ckpt), "--work-dir", str(tmp_path / "eval2"), "--no-report", "--no-progress", nproc=2)
    e1 = json.loads((tmp_path / "eval1" / "metrics.json").read_text())
    e2 = json.loads((tmp_path / "eval2" / "metrics.json").read_text())
    assert e2["mAP"] == pytest.approx(e1["mAP"], abs=1e-9)
    p1 = json.loads((tmp_path / "eval1" / "predictions.json").read_text())["results"]
    p2 = json.loads((tmp_path / "eval2" / "predictions.json").read_text())["results"]
    assert list(p1) == list(p2) and len(p1) == 6 and p1 == p2


def test_sigkill_mid_training_then_resume_matches_an_uninterrupted_run(pulse_dataset, tmp_path):
    # latest.pt after every batch: the kill lands between two of them, most likely mid-epoch.
    cfg = _config(tmp_path / "tiny.yaml", pulse_dataset, epochs=6, save_every_iters=1)
    _gaf("train", str(cfg), "--work-dir", str(tmp_path / "straight"), "--no-progress")

    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "gaf", "train", str(cfg), "--work-dir", str(run), "--no-progress"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (run / "latest.pt").exists():  # the first batch is done: training is under way
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = int(load_checkpoint(run / "latest.pt")["epoch"])  # epochs completed when killed
    assert 0 <= killed_at < 6 and not (run / "final.pt").exists()

    _gaf("train", str(cfg), "--work-dir", str(run), "--resume", "--no-progress")
    _assert_same_weights(tmp_path / "straight" / "final.pt", run / "final.pt", atol=1e-6)
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((run / "metrics.json").read_text())
    assert b["mAP"] == pytest.approx(a["mAP"], abs=1e-9)
    assert "resumed from" in (run / "log.txt").read_text()


SAVER = """
import sys, torch
from gaf.engine.checkpoint import save_checkpoint
path, i = sys.argv[1], 0
while True:
    i += 1
    save_checkpoint(path, {"epoch": i, "model": {"w": torch.full((4_000_000,), float(i))}})
    print(i, flush=True)
"""


def test_sigkill_during_checkpoint_writes_never_leaves_a_corrupt_latest(tmp_path):
    path = tmp_path / "latest.pt"
    for delay in (0.05, 0.13, 0.29):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            first = proc.stdout.readline()  # one save done
            assert first.strip().isdigit(), proc.stderr.read()
            time.sleep(delay)  # now, most likely, mid-write of a later one
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
        state = load_checkpoint(path)  # never a half-written file under the final name
        w = state["model"]["w"]
        assert w.shape == (4_000_000,) and torch.all(w == float(state["epoch"]))


def test_extraction_over_two_processes_shards_videos_and_writes_one_joint_index(tmp_path):
    from conftest import VIDEOS_DIR

    clips = [VIDEOS_DIR / "v_Basketball_g01_c01.avi", VIDEOS_DIR / "archery_paddlevideo_example.avi"]
    data = (VIDEOS_DIR / "apply_eye_makeup_mmaction2_test.avi").read_bytes()
    broken = tmp_path / "broken_clip.avi"
    broken.write_bytes(data[: len(data) // 2])
    inputs = [str(clips[0]), str(broken), str(clips[1])]
    tiny = ["--fps", "5", "--window", "8", "--stride", "4", "--short-side", "64", "--crop", "64", "--no-progress"]

    cmd = [sys.executable, "-m", "gaf", "extract", *inputs, "--out", str(tmp_path / "one"), *tiny]
    one = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "gaf",
           "extract", *inputs, "--out", str(tmp_path / "two"), *tiny]
    two = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert one.returncode == 1 and two.returncode != 0, two.stderr[-3000:]  # the broken clip fails both runs
    assert "2 video(s) extracted" in two.stdout and "1 failed" in two.stdout and "broken_clip.avi" in two.stdout
    assert two.stdout.count("video(s) extracted") == 1  # one joint report, from rank 0

    import numpy as np

    # Rank 0 took files 1 and 3, rank 1 the broken file 2: had each rank extracted every file, the joint
    # report would count 4 videos and 2 failures.
    for clip in clips:
        a, b = np.load(tmp_path / "one" / f"{clip.stem}.npy"), np.load(tmp_path / "two" / f"{clip.stem}.npy")
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    i1 = json.loads((tmp_path / "one" / "features.json").read_text())
    i2 = json.loads((tmp_path / "two" / "features.json").read_text())
    assert sorted(i2["videos"]) == sorted(i1["videos"]) == sorted(c.stem for c in clips)
    assert i2["videos"] == i1["videos"]
