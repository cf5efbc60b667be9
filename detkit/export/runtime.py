"""Compatibility names: the onnxruntime detector lives in :mod:`detkit.inference.onnx_detector`."""

from detkit.inference.onnx_detector import (  # noqa: F401
    METADATA_KEY,
    OnnxDetector,
    create_session,
    default_providers,
    read_model_metadata,
    sidecar_path,
)
