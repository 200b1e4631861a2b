"""gaf export --ckpt CKPT --format torchscript|onnx --out FILE: a trained detector for deployment."""

from __future__ import annotations

import argparse

HELP = """\
Export a trained detector (a `gaf train` checkpoint on features) as a
TorchScript or ONNX model: features in, raw outputs out, for one window of
the checkpoint's dataset.max_seq_len steps (the window gaf evaluates with;
cut longer videos into overlapping windows, pad shorter ones and mask them).

  inputs   features (B, C, T) float32, mask (B, T) bool (True on real steps)
  outputs  cls_logits (B, P, K), offsets (B, P, 2) steps to start / end,
           quality (B, P) logits, points (P,) steps, point_mask (B, P),
           attention (B, T) λ per step (zeros without GAF)

Decoding (score = sigmoid(cls) * sigmoid(quality); segment = point - left,
point + right; seconds = steps * feature_stride / fps + window start;
per-class Soft-NMS) is gaf's and is written beside the model as FILE.json
with every number it needs (labels, thresholds, fps, stride, sigma); see
gaf/export.py. ONNX needs `pip install 'gaf[export]'` (onnx; onnxruntime to
run it).

examples:
  gaf export --ckpt work_dirs/demo/final.pt --format torchscript --out demo.ts
  gaf export --ckpt work_dirs/thumos14_i3d/final.pt --format onnx --out thumos14.onnx
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trained detector as TorchScript or ONNX", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="detector checkpoint (final.pt, latest.pt, epoch_N.pt)")
    p.add_argument("--format", dest="fmt", choices=("torchscript", "onnx"), default="torchscript",
                   help="torchscript (torch.jit.load) or onnx (onnxruntime) (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="FILE", help="model file to write (and FILE.json beside it)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gaf.export import export_detector
    from gaf.io import refuse_input_as_output

    refuse_input_as_output(args.out, [args.ckpt], "--out")
    refuse_input_as_output(args.out + ".json", [args.ckpt], "--out")
    model, settings = export_detector(args.ckpt, args.out, fmt=args.fmt)
    print(f"wrote {model} ({args.fmt}) and {settings} (decoding settings)")
    return 0
