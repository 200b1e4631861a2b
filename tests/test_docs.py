"""The README and --help stay true to the code: every config key is in the README's key tables, help
examples keep their lines, the demo's time is one measured number."""

from __future__ import annotations

import re
from pathlib import Path

from gaf.config import config_keys
from gaf.engine.experiment import ExperimentConfig
from gaf.engine.recognition import RecognitionExperiment

ROOT = Path(__file__).resolve().parents[1]


def _documented_keys(text: str) -> set[str]:
    """Keys named in the first cell of README table rows: "`a.b.c` / `d` / `e`" names a.b.c, a.b.d, a.b.e."""
    keys: set[str] = set()
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        names = re.findall(r"`([^`]+)`", line.split("|")[1])
        if not names:
            continue
        parent = names[0].rsplit(".", 1)[0] + "." if "." in names[0] else ""
        keys.add(names[0])
        keys.update(parent + n for n in names[1:])
    return keys


def test_the_readme_tables_list_every_config_key() -> None:
    documented = _documented_keys((ROOT / "README.md").read_text(encoding="utf-8"))

    def covered(key: str) -> bool:
        # e2e.detector takes the model keys; a recognition config's model.gaf.* are the detection ones
        return key in documented or key.replace("e2e.detector.", "model.", 1) in documented

    missing = [k for k in config_keys(ExperimentConfig) + config_keys(RecognitionExperiment) if not covered(k)]
    assert not missing, f"README config tables lack: {missing}"
    assert len(config_keys(ExperimentConfig)) > 150  # the walk reaches the nested and optional sections


def test_help_examples_keep_their_line_breaks(capsys) -> None:
    import pytest

    from gaf.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--set frames.video_dir=/data/thumos/videos \\\n      --set e2e.backbone_weights" in text


def test_the_demo_time_is_one_number_everywhere() -> None:
    texts = {p: p.read_text(encoding="utf-8") for p in [ROOT / "README.md", ROOT / "docs" / "performance.md",
                                                          ROOT / "gaf" / "commands" / "demo.py"]}
    numbers = {}
    for path, text in texts.items():
        text = " ".join(text.split())
        stated = re.findall(r"(?:gaf demo|make demo|About)\b[^.]{0,160}?\b(\d+(?:\.\d+)?) min(?!utes to build)", text)
        assert stated, path
        numbers[path] = set(stated)
    assert len(set().union(*numbers.values())) == 1, numbers
