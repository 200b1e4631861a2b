"""Running gaf as a user who is not root, for the tests of read-only folders.

Root writes into read-only folders anyway, so such a test run as root (as CI runs the suite) would prove
nothing, and used to be skipped. These helpers make it run everywhere: under root, the command runs in a
subprocess as uid / gid 65534 (``nobody``) through ``setpriv`` (util-linux), in a folder that user owns;
otherwise as ourselves. A test skips, saying why, only where no Python can import gaf as that user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

NOBODY = 65534


@contextlib.contextmanager
def nobody_folder() -> Iterator[Path]:
    """A fresh folder in the system's temp dir (pytest's own is private to root), with a ``home`` for the
    subprocess; every folder in it is made writable again and it is removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="gaf_nobody_"))
    folder.chmod(0o755)
    (folder / "home").mkdir()
    try:
        yield folder
    finally:
        for root, dirs, _ in os.walk(folder):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
        shutil.rmtree(folder, ignore_errors=True)


def give_to_nobody(folder: Path) -> None:
    """Make uid / gid 65534 own ``folder`` and everything in it (when we are root; otherwise we own it)."""
    if os.geteuid() != 0:
        return
    for root, dirs, files in os.walk(folder):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, NOBODY, NOBODY)


def gaf_as_nobody(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m gaf ARGS`` in ``folder`` as a user who is not root (see the module docstring); HOME and TMPDIR
    are ``folder/home``."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux): cannot drop to a non-root user")
        prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    home = str(folder / "home")
    env = {**os.environ, "HOME": home, "TMPDIR": home, "MPLCONFIGDIR": home, "OMP_NUM_THREADS": "1"}
    probe = subprocess.run([*prefix, sys.executable, "-c", "import gaf.cli"], cwd=folder, env=env,
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"this Python cannot import gaf as uid {NOBODY if prefix else os.getuid()}: "
                    f"{(probe.stderr.strip().splitlines() or ['?'])[-1]}")
    return subprocess.run([*prefix, sys.executable, "-m", "gaf", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300)
