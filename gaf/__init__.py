"""gaf: generative attention (GAF) for video action analysis.

Importing ``gaf`` is cheap: it does not import torch. Heavy modules
(models, engine) import torch themselves when they are used.

The Python API (docs/api.md)::

    import gaf
    detector = gaf.load_detector("work_dirs/demo/final.pt")
    for d in detector.detect("match.mp4", backbone_weights=["i3d_k400.pt"]):   # or a (T, C) feature array
        print(d.start, d.end, d.label, d.score, d.attention)
    gaf.score("thumos14-test-212", "predictions.json").average_mAP
"""

__version__ = "0.1.0"

from gaf.api import Detection, Detections, Detector, analyze, classify, extract, load_detector, score, train
from gaf.errors import GafError

__all__ = ["Detection", "Detections", "Detector", "GafError", "__version__", "analyze", "classify", "extract",
           "load_detector", "score", "train"]
