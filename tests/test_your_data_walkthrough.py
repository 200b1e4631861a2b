"""docs/your_data.md runs as written: from a folder of videos and a CSV to the detections on a new video.

The test builds the page's inputs from the real clips of ``shared/data/videos``: three Kinetics-400
clips (abseiling, arm wrestling, cleaning pool) are cut into pieces and joined, with a still, neutral
background between them, into six labelled videos (17-19 s, three actions each) and one new video
(16.6 s), so every action's start and end is known to the frame. The new video holds the last 3 s of
each clip's action, which no labelled video shows. The page's ```bash blocks are then run in order,
in one bash with ``set -euo pipefail``; the first block only names the inputs (``NAME=value`` lines),
and the test gives those names its own paths (``SEED``: the ``train_seed`` fixture).

Asserted: every command succeeds; ``gaf detect`` on the new video keeps (score >= 0.2) each of its
three actions, the best detection of each class overlapping it with tIoU > 0.3, and nothing else; and
``gaf eval`` gives mAP@0.5 above 0.5 on the held-out labelled video. Measured under training seeds 0,
1 and 2 (one CPU thread, 2-2.5 minutes each): tIoU 0.86-0.93, the actions' scores 0.46-0.63, the best
false detection 0.08-0.13, mAP 1.0 at every tIoU.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, VIDEOS_DIR, encode_video

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "your_data.md"
CKPT = SHARED / "weights" / "i3d-kinetics-400.ckpt"
SOURCES = {  # class -> the real clip its actions are cut from (10 s each, Kinetics-400) and its frames that
    # show the action at 25 fps (the arm wrestling ends at 7.6 s: the camera pans away, a wrestler leaves)
    "abseiling": ("abseiling_k400.mp4", 250),
    "arm_wrestling": ("k400_arm_wrestling_mmaction2_demo.mp4", 190),
    "cleaning_pool": ("cleaning_pool_mmaction2_test.mp4", 250),
}
FPS, WIDTH, HEIGHT = 25, 160, 128
HELD_OUT = 3 * FPS  # the last 3 s of each clip's action go to the new video only
NUM_LABELLED = 6
INPUTS = ("VIDEOS", "CSV", "NEW", "I3D", "WORK", "SEED")  # the page's first block names exactly these


def _source_frames() -> dict[str, list[np.ndarray]]:
    """Each clip's frames at 25 fps, short side 128, centre-cropped to 160 x 128."""
    from gaf.data.video import iter_frames

    out = {}
    for label, (name, action) in SOURCES.items():
        frames = [f.copy() for f in iter_frames(VIDEOS_DIR / name, fps=FPS, short_side=HEIGHT, crop=None)]
        left = (frames[0].shape[1] - WIDTH) // 2
        out[label] = [f[:, left:left + WIDTH] for f in frames[:action]]
    return out


def _write_mp4(path: Path, frames: list[np.ndarray]) -> None:
    """``(H, W, 3)`` uint8 RGB frames as an MPEG-4 Part 2 .mp4 at 25 fps (frame i at i / 25 s)."""
    encode_video(path, frames, list(range(len(frames))), Fraction(1, FPS), codec="mpeg4", pix_fmt="yuv420p",
                 bit_rate=1_500_000)


def _join(path: Path, clips: dict[str, list[np.ndarray]], pieces: list[tuple[str, int, int]],
          rng: np.random.Generator) -> list[tuple[float, float, str]]:
    """Write ``pieces`` (label, first frame, frame count) of ``clips`` joined by 1.5-3 s of a still
    background (one neutral noise image per video); returns each piece's (start s, end s, label)."""
    still = np.clip(rng.normal(128, 20, (HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    frames, segments = [], []
    for label, first, count in pieces:
        frames += [still] * int(rng.integers(int(1.5 * FPS), 3 * FPS + 1))
        segments.append((len(frames) / FPS, (len(frames) + count) / FPS, label))
        frames += clips[label][first:first + count]
    frames += [still] * int(rng.integers(int(1.5 * FPS), 3 * FPS + 1))
    _write_mp4(path, frames)
    return segments


def build_inputs(root: Path) -> dict[str, object]:
    """``root/videos/clip_01..06.mp4`` + ``root/labels.csv`` (video,start,end,label) and the unlabelled
    ``root/new/new_video.mp4``; returns the page's inputs and the new video's true segments."""
    clips = _source_frames()
    rng = np.random.default_rng(0)  # the data is fixed; only the training seed varies
    videos = root / "videos"
    videos.mkdir(parents=True)
    rows = []
    for i in range(1, NUM_LABELLED + 1):
        pieces = []
        for label in rng.permutation(list(SOURCES)):
            count = int(rng.integers(int(2.5 * FPS), int(4.5 * FPS) + 1))
            pieces.append((str(label), int(rng.integers(0, len(clips[label]) - HELD_OUT - count + 1)), count))
        for start, end, label in _join(videos / f"clip_{i:02d}.mp4", clips, pieces, rng):
            rows.append((f"clip_{i:02d}", f"{start:.2f}", f"{end:.2f}", label))
    labels = root / "labels.csv"
    with labels.open("w", newline="") as f:
        csv.writer(f).writerows([("video", "start", "end", "label"), *rows])
    (root / "new").mkdir()
    new = root / "new" / "new_video.mp4"
    truth = _join(new, clips, [(label, len(clips[label]) - HELD_OUT, HELD_OUT)
                               for label in ("cleaning_pool", "abseiling", "arm_wrestling")], rng)
    return {"VIDEOS": videos, "CSV": labels, "NEW": new, "truth": truth}


def _bash_blocks(page: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


def _tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def test_the_first_block_only_names_the_inputs() -> None:
    """The test can replace the page's first block: it only assigns the inputs, one NAME=value a line."""
    first = _bash_blocks(PAGE)[0]
    lines = [line.split("#", 1)[0].strip() for line in first.splitlines()]
    names = [line.split("=", 1)[0] for line in lines if line]
    assert names == list(INPUTS) and all(re.fullmatch(r"[A-Z0-9]+=\S+", line) for line in lines if line)


@pytest.mark.slow
@pytest.mark.learning
def test_the_walkthrough_runs_as_written(tmp_path: Path, train_seed: int, record_property) -> None:
    """Every ```bash block of docs/your_data.md, in order: weights (offline, --from the shared checkpoint),
    extract, import, check --write, train, eval, detect on the new video, analyze."""
    needed = [CKPT, *(VIDEOS_DIR / name for name, _ in SOURCES.values())]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:  # real-data tests fail, never skip, when the data is missing
        pytest.fail(f"the walk-through needs the real clips and I3D checkpoint of shared/data: missing {missing}")
    inputs = build_inputs(tmp_path / "inputs")
    page = PAGE.read_text(encoding="utf-8")
    shown = re.search(r"```text\n(video,start,end,label\n.*?)```", page, flags=re.S)
    assert shown and inputs["CSV"].read_text().startswith(shown.group(1)), "the page shows the test's CSV"
    for start, end, label in inputs["truth"]:
        assert f"{label} {start:.2f}-{end:.2f} s" in " ".join(page.split()), "the page gives the true actions"
    values = {"VIDEOS": inputs["VIDEOS"], "CSV": inputs["CSV"], "NEW": inputs["NEW"], "I3D": CKPT,
              "WORK": "work", "SEED": train_seed}
    script = "\n".join(["set -euo pipefail", "PS4='+ [${SECONDS} s] '",  # bash -x: each command, timed
                        *(f"{k}={shlex.quote(str(values[k]))}" for k in INPUTS), *_bash_blocks(PAGE)[1:]])
    env = {**os.environ, "OMP_NUM_THREADS": "1",  # one thread: gaf train's train.threads 0 = torch's default
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = tmp_path / "walkthrough.log"
    with log.open("w") as out:
        proc = subprocess.run(["bash", "-x", "-c", script], cwd=tmp_path, env=env, stdout=out,
                              stderr=subprocess.STDOUT, timeout=1200)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, f"the walk-through stopped (exit {proc.returncode}); its log ends:\n{text[-6000:]}"
    work = tmp_path / "work"

    metrics = json.loads((work / "run" / "eval_final" / "metrics.json").read_text())
    map50 = metrics["mAP"][metrics["tious"].index(0.5)]
    record_property("eval_mAP@0.5", float(map50))
    detections = json.loads((work / "detections" / "new_video.json").read_text())["results"]["new_video"]
    record_property("detections", len(detections))
    for d in detections:  # what gaf detect prints (score >= 0.2): the new video's actions, nothing else
        assert any(d["label"] == label and _tiou(tuple(d["segment"]), (start, end)) > 0.3
                   for start, end, label in inputs["truth"]), f"a detection matching no action: {d}"
    for start, end, label in inputs["truth"]:
        ours = [d for d in detections if d["label"] == label]
        assert ours, f"no {label} detection on the new video (true {start:.2f}-{end:.2f} s): {detections[:6]}"
        best = max(ours, key=lambda d: d["score"])
        overlap = _tiou(tuple(best["segment"]), (start, end))
        record_property(f"{label}_tIoU", overlap)
        record_property(f"{label}_score", float(best["score"]))
        assert overlap > 0.3, f"{label}: best detection {best} against the true {start:.2f}-{end:.2f} s"
    assert map50 > 0.5, metrics
    assert (work / "detections" / "new_video_timeline.png").is_file()
    assert json.loads((work / "analysis" / "analysis.json").read_text())
