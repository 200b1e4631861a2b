"""Metrics: detection mAP (ActivityNet-identical) and recognition top-k."""
