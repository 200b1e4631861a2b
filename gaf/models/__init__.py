"""Models: the GAF module, the anchor-free detector, the recognizer, backbones."""
