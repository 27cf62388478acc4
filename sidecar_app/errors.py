"""Errors as data: one exception type per failure a client or operator can act on.

Each carries the HTTP status it maps to; the app turns any of them into
``{"error": message}`` with that status in one place (``app.error_response``).
"""

from __future__ import annotations


class SidecarError(Exception):
    """Base class: ``status`` is the HTTP status, ``str(self)`` the message for the client."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedBody(SidecarError):
    """The body is not parseable JSON."""

    status = 400


class InvalidInput(SidecarError):
    """Well-formed JSON or binary that breaks the contract (shape, types, finiteness)."""

    status = 422


class BodyTooLarge(SidecarError):
    status = 413


class UnsupportedMediaType(SidecarError):
    status = 415


class NotReady(SidecarError):
    """The model is not loaded or the device failed: the client may retry later."""

    status = 503

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelLoadError(Exception):
    """A backend could not load its model; ``kind`` names the failure for metrics and health."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class DeviceError(Exception):
    """Inference failed on the device (not the client's fault); the backend must be reopened."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
