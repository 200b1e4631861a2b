"""gaf extract: raw videos → T×C feature files + features.json, end to end on real clips."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("av")

from gaf.cli import main  # noqa: E402
from gaf.data.video import iter_clips, num_windows, probe  # noqa: E402
from gaf.errors import ConfigError, DataError  # noqa: E402
from gaf.extraction import ExtractConfig, collect_videos, extract_features, video_id_of  # noqa: E402
from gaf.models.backbones.i3d import InceptionI3d  # noqa: E402

from conftest import VIDEOS_DIR as VIDEOS  # noqa: E402
A = VIDEOS / "v_Basketball_g01_c01.avi"  # 4.7 s
B = VIDEOS / "archery_paddlevideo_example.avi"  # 5.24 s
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.skipif(not (A.exists() and B.exists()), reason="real clips not available")]
TINY = ["--fps", "5", "--window", "8", "--stride", "4", "--short-side", "64", "--crop", "64", "--no-progress"]


def steps(path: Path, fps: float = 5.0, window: int = 8, stride: int = 4) -> int:
    return num_windows(math.ceil(probe(path).duration * fps - 1e-4), window, stride)


@pytest.fixture()
def corrupt(tmp_path: Path) -> Path:
    data = (VIDEOS / "apply_eye_makeup_mmaction2_test.avi").read_bytes()
    bad = tmp_path / "in" / "broken_clip.avi"
    bad.parent.mkdir()
    bad.write_bytes(data[: len(data) // 2])
    return bad


def test_cli_extracts_two_clips_reports_the_corrupt_one_and_skips_on_rerun(tmp_path: Path, corrupt: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "feats"
    with pytest.warns(UserWarning, match="UNTRAINED"):
        code = main(["extract", str(A), str(corrupt), str(B), "--out", str(out), *TINY])
    assert code == 1
    printed = capsys.readouterr().out
    assert "2 video(s) extracted" in printed and "1 failed" in printed
    assert "broken_clip.avi" in printed and "truncated" in printed
    a, b = np.load(out / f"{A.stem}.npy"), np.load(out / f"{B.stem}.npy")
    assert a.shape == (steps(A), 1024) == (5, 1024) and b.shape == (steps(B), 1024) and a.dtype == np.float32
    assert np.isfinite(a).all() and a.std() > 0
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{A.stem}.npy", f"{B.stem}.npy", "features.json"])

    index = json.loads((out / "features.json").read_text())
    assert (index["fps"], index["stride"], index["window"], index["streams"]) == (5.0, 4, 8, ["rgb"])
    assert index["dims"] == {"rgb": 1024} and index["feature_dim"] == 1024
    assert set(index["videos"]) == {A.stem, B.stem}
    assert index["videos"][A.stem]["num_steps"] == 5
    assert index["videos"][A.stem]["duration"] == pytest.approx(4.7047, abs=1e-3)
    assert index["videos"][B.stem]["num_frames"] == 27
    assert Path(index["videos"][B.stem]["source"]) == B.resolve()

    mtime = (out / f"{A.stem}.npy").stat().st_mtime_ns
    code = main(["extract", str(A), str(B), "--out", str(out), *TINY])
    assert code == 0
    assert "2 skipped" in capsys.readouterr().out
    assert (out / f"{A.stem}.npy").stat().st_mtime_ns == mtime


def test_features_are_the_backbone_on_the_decoded_windows_and_deterministic(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = InceptionI3d(3, num_classes=400).eval()
    torch.save(model.state_dict(), tmp_path / "rgb.pt")
    cfg = ExtractConfig(fps=5.0, window=8, stride=4, short_side=64, crop=64, batch_size=3, rgb_weights=str(tmp_path / "rgb.pt"),
                        device="cpu", progress=False)
    first = extract_features([A], tmp_path / "one", cfg)
    second = extract_features([A], tmp_path / "two", cfg)
    assert first.written == second.written == [A.stem] and first.ok
    got = np.load(tmp_path / "one" / f"{A.stem}.npy")
    np.testing.assert_array_equal(got, np.load(tmp_path / "two" / f"{A.stem}.npy"))
    with torch.no_grad():
        expected = torch.cat([model.forward_features(x).mean(-1) for x in
                              iter_clips(A, window=8, stride=4, batch_size=3, fps=5.0, short_side=64, crop=64,
                                         normalize=True)])
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_both_streams_concatenate_rgb_then_flow(tmp_path: Path) -> None:
    cfg = ExtractConfig(stream="both", fps=5.0, window=8, stride=4, short_side=48, crop=48, flow_method="builtin",
                        device="cpu", progress=False)
    with pytest.warns(UserWarning):
        report = extract_features([A], tmp_path, cfg)
    feats = np.load(tmp_path / f"{A.stem}.npy")
    assert report.ok and feats.shape == (steps(A), 2048)
    rgb_only = ExtractConfig(fps=5.0, window=8, stride=4, short_side=48, crop=48, device="cpu", progress=False)
    with pytest.warns(UserWarning):
        extract_features([A], tmp_path / "rgb", rgb_only)
    np.testing.assert_array_equal(feats[:, :1024], np.load(tmp_path / "rgb" / f"{A.stem}.npy"))  # same seed, same RGB net
    index = json.loads((tmp_path / "features.json").read_text())
    assert index["streams"] == ["rgb", "flow"] and index["flow_method"] == "builtin" and index["feature_dim"] == 2048


def test_index_is_merged_and_other_settings_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "feats"
    with pytest.warns(UserWarning):
        assert main(["extract", str(A), "--out", str(out), *TINY]) == 0
        assert main(["extract", str(B), "--out", str(out), *TINY]) == 0
    assert set(json.loads((out / "features.json").read_text())["videos"]) == {A.stem, B.stem}
    capsys.readouterr()
    assert main(["extract", str(A), "--out", str(out), *TINY, "--stride", "8"]) == 2
    assert "stride=4" in capsys.readouterr().err


def test_cli_argument_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["extract", str(A), "--out", str(tmp_path), "--stream", "both", "--backbone-weights", "rgb.pt"]) == 2
    assert "takes 2 file(s)" in capsys.readouterr().err
    assert main(["extract", str(tmp_path / "nope.mp4"), "--out", str(tmp_path)]) == 2
    assert "nope.mp4" in capsys.readouterr().err
    assert main(["extract", str(A), "--out", str(tmp_path), "--window", "0"]) == 2


def test_an_out_path_that_is_a_file_is_one_line_error_and_left_alone(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """Fixed: a FileExistsError traceback."""
    taken = tmp_path / "feats"
    taken.write_text("not a folder\n")
    for out in (taken, taken / "sub"):
        assert main(["extract", str(A), "--out", str(out), *TINY]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"gaf extract: error: {out}: cannot use as the feature folder: ")
        assert "Traceback" not in err
        assert ("it is a file, not a folder" if out == taken else "a part of the path is a file") in err
        assert len(err.strip().splitlines()) == 1
    assert taken.read_text() == "not a folder\n"


def test_folders_are_searched_and_video_ids_must_be_safe(tmp_path: Path, corrupt: Path) -> None:
    (corrupt.parent / "notes.txt").write_text("x")
    assert collect_videos([corrupt.parent, A]) == [corrupt, A]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no video files"):
        collect_videos([tmp_path / "empty"])
    assert video_id_of(Path("/x/video_test_0000004.mp4")) == "video_test_0000004"
    for bad in (".hidden.mp4", "a|b.mp4", "tab\tname.mp4"):
        with pytest.raises(DataError, match="not a safe file name"):
            video_id_of(Path(bad))
    with pytest.raises(ConfigError, match="extract.fps"):
        ExtractConfig(fps=0)
