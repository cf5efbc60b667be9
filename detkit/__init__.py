"""detkit: from a folder of labelled images to a calibrated, deployable RT-DETR detector."""

import os as _os

# albumentations checks the package index for updates on import; we never want a network call.
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
_os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

__version__ = "0.1.0"

__all__ = ["Detector", "load_model", "open_detector", "__version__"]


def __getattr__(name: str):
    # lazy: `import detkit` must not import torch
    if name in ("load_model", "Detector"):  # Detector: the PyTorch detector class (detkit.inference.TorchDetector)
        from detkit import api

        return getattr(api, name)
    if name == "open_detector":
        from detkit.inference.resolve import open_detector

        return open_detector
    raise AttributeError(f"module 'detkit' has no attribute {name!r}")
