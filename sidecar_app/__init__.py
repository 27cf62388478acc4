"""hailo-sidecar: the /infer contract for EdgeInfer, served from stub, ONNX or Hailo backends."""

__version__ = "0.1.0"
