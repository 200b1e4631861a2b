"""Data: annotation formats, feature datasets, video decoding, the embedded benchmark."""
