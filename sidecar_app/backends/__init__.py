"""One backend per mode behind one interface; ``create_backend`` picks it from the settings."""

from __future__ import annotations

from ..settings import Mode, Settings
from .base import Backend, ModelInfo

__all__ = ["Backend", "ModelInfo", "create_backend"]


def create_backend(mode: Mode, settings: Settings) -> Backend:
    if mode == "stub":
        from .stub import StubBackend

        return StubBackend(settings.num_motifs)
    if mode == "onnx":
        from .onnx import OnnxBackend

        return OnnxBackend(settings.onnx_path, settings.num_motifs)
    from ..release import hef_input_shape, read_manifest
    from .hailo import HailoBackend

    manifest = settings.manifest_for(settings.hef_path)
    expected = hef_input_shape(read_manifest(manifest)) if manifest is not None else None
    return HailoBackend(settings.hef_path, settings.num_motifs, settings.hailo_device, expected)
