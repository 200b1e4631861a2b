"""Specification of gaf.data.ucf101: UCF101's official split lists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import SHARED
from gaf.data.ucf101 import read_ucf101_split
from gaf.errors import AnnotationError

UCF_DIR = SHARED / "ucf101"
needs_data = pytest.mark.skipif(not (UCF_DIR / "classInd.txt").is_file(), reason="shared data not present")


def write(path: Path, doc: str) -> Path:
    path.write_text(doc)
    return path


def raises_naming(*parts: str):
    """pytest.raises(AnnotationError) whose message contains every one of ``parts``."""
    return pytest.raises(AnnotationError, match="(?s)" + "".join(f"(?=.*{re.escape(p)})" for p in parts))


@needs_data
@pytest.mark.parametrize("split, train, test", [(1, 9537, 3783), (2, 9586, 3734), (3, 9624, 3696)])
def test_ucf101_official_splits_have_published_sizes_and_zero_based_labels(split, train, test):
    classes, tr, te = read_ucf101_split(UCF_DIR, split)
    assert (len(classes), len(tr), len(te)) == (101, train, test)
    assert classes[0] == "ApplyEyeMakeup" and classes[-1] == "YoYo"
    assert len({p for p, _ in tr} | {p for p, _ in te}) == 13320
    assert all(classes[label] == path.split("/")[0] for path, label in tr + te)


def test_ucf101_errors_name_file_and_line(tmp_path):
    write(tmp_path / "classInd.txt", "1 Archery\r\n2 Bowling\r\n")
    write(tmp_path / "trainlist01.txt", "Archery/v_Archery_g08_c01.avi 1\r\nBowling/v_Bowling_g08_c01.avi 1\r\n")
    write(tmp_path / "testlist01.txt", "Archery/v_Archery_g01_c01.avi\r\n")
    with raises_naming("trainlist01.txt", "line 2", "'Bowling' is class 2"):
        read_ucf101_split(tmp_path)
    write(tmp_path / "trainlist01.txt", "Bowling/v_Bowling_g08_c01.avi 2\r\n")
    assert read_ucf101_split(tmp_path) == (["Archery", "Bowling"], [("Bowling/v_Bowling_g08_c01.avi", 1)],
                                           [("Archery/v_Archery_g01_c01.avi", 0)])
    write(tmp_path / "testlist01.txt", "Archery/a.avi\r\nSkiing/v_Skiing_g01_c01.avi\r\n")
    with raises_naming("testlist01.txt", "line 2", "Skiing"):
        read_ucf101_split(tmp_path)
    write(tmp_path / "classInd.txt", "1 Archery\r\n3 Bowling\r\n")
    with raises_naming("classInd.txt", "line 2", "'2 <ClassName>'"):
        read_ucf101_split(tmp_path)
    write(tmp_path / "classInd.txt", "1 Archery\r\n2 Bowling\r\n")
    with raises_naming("trainlist02.txt", "not found"):
        read_ucf101_split(tmp_path, 2)
