"""Configuration: every invalid value stops start-up with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sidecar_app.settings import ConfigError, load_settings


@pytest.mark.parametrize(
    ("env", "name", "fragment"),
    [
        ({"INFER_MODE": "gpu"}, "INFER_MODE", "stub"),
        ({"USE_REAL_MODEL": "maybe"}, "USE_REAL_MODEL", "bool"),
        ({"INFER_MODE": "stub", "USE_REAL_MODEL": "true"}, "INFER_MODE=stub conflicts", "USE_REAL_MODEL"),
        ({"INFER_MODE": "hailo", "USE_REAL_MODEL": "false"}, "INFER_MODE=hailo conflicts", "USE_REAL_MODEL"),
        ({"MODEL_SHA256": "abc"}, "MODEL_SHA256", "pattern"),
        ({"NUM_MOTIFS": "0"}, "NUM_MOTIFS", "greater than or equal to 1"),
        ({"NUM_MOTIFS": "twelve"}, "NUM_MOTIFS", "integer"),
        ({"CONFIG_VERSION": ""}, "CONFIG_VERSION", "at least 1"),
        ({"FALLBACK_MODE": "hailo"}, "FALLBACK_MODE", "none"),
        ({"INFER_MODE": "onnx", "FALLBACK_MODE": "onnx"}, "FALLBACK_MODE=onnx equals", "mode"),
        ({"PORT": "70000"}, "PORT", "less than or equal to 65535"),
        ({"PORT": "http"}, "PORT", "integer"),
        ({"MAX_BATCH": "0"}, "MAX_BATCH", "greater than or equal to 1"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL", "info"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT", "json"),
        ({"HOST": ""}, "HOST", "at least 1"),
    ],
)
def test_invalid_settings_name_the_variable(monkeypatch, env, name, fragment):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert name in str(err.value)
    assert fragment in str(err.value)


def test_use_real_model_selects_the_mode(monkeypatch):
    monkeypatch.setenv("USE_REAL_MODEL", "true")
    assert load_settings().mode == "hailo"
    monkeypatch.setenv("USE_REAL_MODEL", "false")
    assert load_settings().mode == "stub"
    monkeypatch.delenv("USE_REAL_MODEL")
    assert load_settings().mode == "stub"
    monkeypatch.setenv("INFER_MODE", "onnx")
    monkeypatch.setenv("USE_REAL_MODEL", "true")
    assert load_settings().mode == "onnx"  # onnx is a real model: no conflict


def test_serve_exits_nonzero_naming_the_variable():
    env = {**os.environ, "INFER_MODE": "gpu", "PORT": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar_app.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "INFER_MODE" in proc.stderr
    assert "Traceback" not in proc.stderr
