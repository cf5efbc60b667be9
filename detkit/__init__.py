"""detkit: from a folder of labelled images to a calibrated, deployable RT-DETR detector."""

import os as _os

# albumentations checks the package index for updates on import; we never want a network call.
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
_os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

__version__ = "0.1.0"
