"""Nothing lost: outputs never overwrite inputs, devices, FIFOs or links; files get the umask's mode;
SIGTERM leaves no temp file; OS failures are one-line errors; one run per work dir.

Through the CLI (`gaf score --json`, `gaf eval --out`, `gaf train`) where a command writes the file,
and through :func:`gaf.io.atomic_write_bytes` (every writer of gaf goes through it) for the cases
that need a fault injected mid-write.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gaf.cli import main
from gaf.errors import OutputError
from gaf.io import atomic_write_bytes, atomic_write_json
from nonroot import gaf_as_nobody, give_to_nobody, nobody_folder

GT = {"version": "t", "database": {"v1": {"subset": "test", "duration": 10.0, "annotations": [
    {"label": "Jump", "segment": [1.0, 3.0]}, {"label": "Jump", "segment": [6.0, 8.0]}]}}}
PRED = {"results": {"v1": [{"label": "Jump", "segment": [1.0, 3.1], "score": 0.9},
                           {"label": "Jump", "segment": [4.0, 5.0], "score": 0.5}]}}


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    gt, pred = tmp_path / "gt.json", tmp_path / "pred.json"
    gt.write_text(json.dumps(GT))
    pred.write_text(json.dumps(PRED))
    return gt, pred


def _score(gt: Path, pred: Path, out: str) -> int:
    return main(["score", str(gt), str(pred), "--tious", "0.5", "--json", out])


# ------------------------------------------------------------ inputs are safe
def test_score_refuses_to_write_over_its_own_inputs(files, capsys) -> None:
    gt, pred = files
    before = (gt.read_bytes(), pred.read_bytes())
    for target in (gt, pred, gt.parent / "." / gt.name):
        assert _score(gt, pred, str(target)) == 2
        err = capsys.readouterr().err
        assert "is also an input of this command" in err and err.count("\n") == 1
    link = gt.parent / "gt_link.json"
    link.symlink_to(gt)
    assert _score(gt, pred, str(link)) == 2  # the same file through a link
    assert (gt.read_bytes(), pred.read_bytes()) == before


@pytest.mark.slow
def test_eval_refuses_to_write_predictions_over_the_annotation_file(pulse_dataset, tmp_path, capsys) -> None:
    from gaf.config import from_dict
    from gaf.engine.experiment import ExperimentConfig
    from gaf.engine.train import train

    cfg = from_dict(ExperimentConfig, {
        "name": "tiny", "dataset": pulse_dataset,
        "model": {"gaf": {"attention_dim": 16, "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4},
                  "detector": {"embed_dim": 32, "num_levels": 4, "head_layers": 1, "stem_layers": 1}},
        "train": {"epochs": 1, "batch_size": 4, "eval_at_end": False}, "work_dir": str(tmp_path / "run")})
    ckpt = train(cfg, progress=False).final_checkpoint
    annotations = Path(pulse_dataset["annotation_file"])
    before = annotations.read_bytes()
    for target in (annotations, ckpt):
        assert main(["eval", "--ckpt", str(ckpt), "--out", str(target), "--no-progress"]) == 2
        assert "is also an input of this command" in capsys.readouterr().err
    assert annotations.read_bytes() == before and ckpt.is_file()
    assert not (tmp_path / "run" / "eval_final").exists()  # refused before any inference


# -------------------------------------------------- links, devices, FIFOs, kinds
def test_a_symlink_is_written_through_and_stays_a_link(files, tmp_path) -> None:
    gt, pred = files
    real = tmp_path / "results" / "scores.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "latest_scores.json"
    link.symlink_to(real)
    assert _score(gt, pred, str(link)) == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert "mAP" in json.loads(real.read_text())


def test_character_devices_and_fifos_are_written_into_never_replaced(files, tmp_path, capsys) -> None:
    gt, pred = files
    assert _score(gt, pred, os.devnull) == 0
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    if Path("/dev/full").exists():
        assert _score(gt, pred, "/dev/full") == 2
        err = capsys.readouterr().err
        assert "/dev/full: cannot write: no space left on the device" in err
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a private /dev/null
    except (PermissionError, OSError):
        node = None
    if node is not None:
        assert _score(gt, pred, str(node)) == 0
        assert stat.S_ISCHR(os.stat(node).st_mode)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    assert _score(gt, pred, str(fifo)) == 0
    reader.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert json.loads(received[0])["mAP"]


def test_wrong_kinds_of_output_path_are_one_line_errors(files, tmp_path, capsys) -> None:
    gt, pred = files
    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert _score(gt, pred, str(folder)) == 2
    assert f"{folder}: is a folder, not a file" in capsys.readouterr().err
    blocker = tmp_path / "plain_file"
    blocker.write_text("x")
    assert _score(gt, pred, str(blocker / "scores.json")) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "Traceback" not in err and err.count("\n") == 1


def test_a_read_only_folder_is_a_one_line_error_as_a_non_root_user() -> None:
    """Root writes into read-only folders anyway: under root gaf runs as uid 65534 here (tests/nonroot.py), so
    CI runs this test too (it was skipped as root)."""
    with nobody_folder() as folder:
        gt, pred, ro = folder / "gt.json", folder / "pred.json", folder / "ro"
        gt.write_text(json.dumps(GT))
        pred.write_text(json.dumps(PRED))
        ro.mkdir()
        give_to_nobody(folder)
        ro.chmod(0o555)
        done = gaf_as_nobody(folder, "score", str(gt), str(pred), "--tious", "0.5", "--json", str(ro / "s.json"))
        assert done.returncode == 2, done.stderr
        assert done.stderr == f"gaf score: error: {ro / 's.json'}: cannot write: permission denied\n"
        assert list(ro.iterdir()) == []


# ------------------------------------------------------------------- modes
def test_new_files_get_the_umask_mode_and_replaced_files_keep_theirs(files, tmp_path) -> None:
    gt, pred = files
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.json"
        assert _score(gt, pred, str(fresh)) == 0
        assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o644
        kept = tmp_path / "kept.json"
        kept.write_text("{}")
        kept.chmod(0o640)
        assert _score(gt, pred, str(kept)) == 0
        assert stat.S_IMODE(os.stat(kept).st_mode) == 0o640
        os.umask(0o077)
        private = tmp_path / "private.json"
        atomic_write_json(private, {"a": 1})
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    finally:
        os.umask(old)


# ------------------------------------------------------------ temp files
def test_sigterm_in_the_middle_of_a_write_leaves_no_temp_file(tmp_path) -> None:
    script = textwrap.dedent(f"""
        import os, signal, sys
        import gaf.io as io
        io.install_sigterm_handler()
        real_fsync = os.fsync
        def fsync_then_terminated(fd):
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the temp file is open and written
            real_fsync(fd)
        io.os.fsync = fsync_then_terminated
        io.atomic_write_bytes({str(tmp_path / 'out.bin')!r}, b"x" * 100000)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 143, done.stderr
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temp file


def test_temp_files_of_dead_processes_are_removed_by_the_next_write(tmp_path) -> None:
    dead = tmp_path / ".scores.json.4194305.abcd1234.tmp"  # PID above Linux's pid_max: never alive
    alive = tmp_path / ".scores.json.1.abcd1234.tmp"  # PID 1 lives: maybe mid-write, kept
    other = tmp_path / ".other.json.4194305.abcd1234.tmp"  # another target's: not ours to judge
    for p in (dead, alive, other):
        p.write_bytes(b"partial")
    atomic_write_bytes(tmp_path / "scores.json", b"{}")
    assert not dead.exists() and alive.exists() and other.exists()


def test_os_failures_raise_output_errors_naming_the_path(tmp_path) -> None:
    if Path("/dev/full").exists():
        with pytest.raises(OutputError, match=r"^/dev/full: cannot write: no space left on the device$"):
            atomic_write_bytes("/dev/full", b"x")
    with pytest.raises(OutputError, match="is a folder"):
        atomic_write_bytes(tmp_path, b"x")


# --------------------------------------------------------- one run per dir
def _tiny_train_yaml(dataset: dict, tmp_path: Path, epochs: int) -> Path:
    from gaf.config import from_dict
    from gaf.engine.experiment import ExperimentConfig

    cfg = from_dict(ExperimentConfig, {
        "name": "tiny", "dataset": dataset,
        "model": {"gaf": {"attention_dim": 16, "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4},
                  "detector": {"embed_dim": 32, "num_levels": 4, "head_layers": 1, "stem_layers": 1}},
        "train": {"epochs": epochs, "batch_size": 4, "eval_at_end": False, "health_items": 0,
                  "grad_probe_every": 0},
        "work_dir": str(tmp_path / "run")})
    path = tmp_path / "tiny.yaml"
    path.write_text(cfg.to_yaml())
    return path


@pytest.mark.slow
def test_a_second_train_into_a_live_run_fails_naming_the_holder(pulse_dataset, tmp_path, capsys) -> None:
    config = _tiny_train_yaml(pulse_dataset, tmp_path, epochs=1)
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom gaf.engine.runlock import hold_work_dir\n"
         f"with hold_work_dir({str(run)!r}):\n    print('held', flush=True)\n    time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for extra in ([], ["--resume"]):
            assert main(["train", str(config), "--no-progress", *extra]) == 2
            err = capsys.readouterr().err
            assert f"in use by another gaf run (pid {holder.pid} on " in err and "--work-dir" in err
        assert not (run / "latest.pt").exists() and not (run / "config.yaml").exists()
    finally:
        holder.kill()  # a crash: the kernel frees the lock, no stale lock remains
        holder.wait()
    assert main(["train", str(config), "--no-progress"]) == 0
    assert (run / "final.pt").is_file()


@pytest.mark.slow
def test_sigterm_stops_training_cleanly_and_frees_the_work_dir(pulse_dataset, tmp_path) -> None:
    config = _tiny_train_yaml(pulse_dataset, tmp_path, epochs=200)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "gaf", "train", str(config), "--no-progress",
                             "--set", "train.save_every_iters=1"], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "latest.pt").exists() and time.time() < deadline:  # training has written a checkpoint
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert not list(run.glob(".*.tmp")) and (run / "latest.pt").is_file()
    from gaf.engine.runlock import hold_work_dir

    with hold_work_dir(run):  # released
        pass
