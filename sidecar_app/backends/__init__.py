"""One backend per mode behind one interface; ``create_backend`` picks it from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..settings import Mode, Settings
from .base import Backend, ModelInfo

if TYPE_CHECKING:
    from ..release import Release

__all__ = ["Backend", "ModelInfo", "create_backend"]


def create_backend(
    mode: Mode, settings: Settings, release: Release | None = None, share: Backend | None = None
) -> Backend:
    """The backend for MODE. RELEASE (the pointer's) names the model file and motifs instead of the
    settings; SHARE is the backend serving now, whose device a new hailo model shares."""
    num_motifs = release.num_motifs if release is not None else settings.num_motifs
    model = release.model_path if release is not None else None
    if mode == "stub":
        from .stub import StubBackend

        return StubBackend(num_motifs)
    if mode == "onnx":
        from .onnx import OnnxBackend

        return OnnxBackend(model or settings.onnx_path, num_motifs)
    from ..release import hef_input_shape, read_manifest
    from .hailo import HailoBackend

    path = model or settings.hef_path
    manifest = (
        release.directory / "manifest.json"
        if release is not None and release.directory is not None
        else settings.manifest_for(path)
    )
    expected = hef_input_shape(read_manifest(manifest)) if manifest is not None else None
    shared = share.handle if isinstance(share, HailoBackend) else None
    return HailoBackend(path, num_motifs, settings.hailo_device, expected, shared)
