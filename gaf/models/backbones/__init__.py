"""Video backbones (I3D)."""
