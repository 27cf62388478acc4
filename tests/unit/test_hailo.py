"""Hailo mode against the stand-in HailoRT that follows HailoRT's own sources (lab/standins):
a bounded async queue, status numbers behind the exception classes, [H, W, C] shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hailo_platform import standin
from hailo_platform.pyhailort import _pyhailort
from hailo_platform.pyhailort.pyhailort import ExceptionWrapper

from sidecar_app.backends import hailo
from sidecar_app.backends.hailo import HailoBackend, classify
from sidecar_app.refmodel import sample_windows

GOOD = [[0.01 * (i + j) for j in range(9)] for i in range(100)]


def raised(status: int) -> BaseException:
    """An exception exactly as pyhailort raises it for STATUS (its ExceptionWrapper, from the
    extension's HailoRTStatusException)."""
    try:
        with ExceptionWrapper():
            raise _pyhailort.HailoRTStatusException(str(status))
    except Exception as exc:
        return exc
    raise AssertionError("not raised")


def test_a_batch_larger_than_the_queue_equals_single_windows(hef):
    """64 windows with a queue of 4: pushed in chunks the queue can hold (a 5th push would be
    status 82 and shut the model down); the results equal one window at a time."""
    standin.CONTROL.update({"async_queue_size": 4, "frame_time_s": 0.001})
    backend = HailoBackend(hef, 12)
    info = backend.load()
    x = sample_windows(64)
    latent, motifs = backend.infer(x)
    assert info.async_queue_size == 4
    singles = [backend.infer(x[i : i + 1]) for i in range(64)]
    np.testing.assert_array_equal(latent, np.concatenate([s[0] for s in singles]))
    np.testing.assert_array_equal(motifs, np.concatenate([s[1] for s in singles]))
    assert latent.shape == (64, 64) and motifs.shape == (64, 12)
    assert float(motifs.min()) >= 0.0 and float(motifs.max()) <= 1.0
    backend.close()


def test_the_queue_is_real_a_push_past_it_kills_the_configured_model(hef):
    """What the backend avoids: the stand-in refuses the fifth binding with 82 and stays dead (63)."""
    import hailo_platform as hp

    standin.CONTROL.update({"async_queue_size": 4, "frame_time_s": 0.05})
    params = hp.VDevice.create_params()
    params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
    with hp.VDevice(params) as vdevice:
        model = vdevice.create_infer_model(str(hef))
        model.input().set_format_type(hp.FormatType.FLOAT32)
        for name in model.output_names:
            model.output(name).set_format_type(hp.FormatType.FLOAT32)
        with model.configure() as cim:

            def bindings():
                b = cim.create_bindings(
                    output_buffers={
                        n: np.empty(model.output(n).shape, np.float32) for n in model.output_names
                    }
                )
                b.input().set_buffer(np.zeros(model.input().shape, np.float32))
                return b

            with pytest.raises(hp.HailoRTException) as full:
                cim.run([bindings() for _ in range(5)], 1000)
            assert str(full.value) == "libhailort failed with error: 82 (HAILO_QUEUE_IS_FULL)"
            with pytest.raises(hp.HailoRTException) as dead:
                cim.run([bindings()], 1000)
            assert type(dead.value).__name__ == "HailoRTStreamAborted" and dead.value.__cause__.args == (
                "63",
            )


@pytest.mark.parametrize(
    ("status", "kind", "fix"),
    [
        (74, "device_unavailable", "fuser -v /dev/hailo0"),
        (73, "device_in_use", "stop the other user"),
        (76, "driver_mismatch", "hailort_version_set"),
        (36, "driver_error", "dmesg | grep hailo"),
        (16, "firmware_mismatch", "reboot"),
        (64, "driver_missing", "dkms status"),
        (82, "queue_full", "reopening"),
        (63, "pipeline_aborted", "reopening"),
        (91, "hef_corrupted", "deploy the release again"),
        (92, "hef_not_supported", "paired with this HailoRT"),
        (93, "hef_arch", "--hw-arch"),
        (4, "timeout", "HAILO_TIMEOUT"),
    ],
)
def test_each_status_has_its_own_kind_and_fix(status, kind, fix, tmp_path):
    exc = raised(status)
    got_kind, message = classify(exc, tmp_path / "absent-node-is-not-asked-unless-36")
    if status == 36:
        # No node at that path: that is the problem the access check names.
        assert got_kind == "device_node_missing" and "does not exist in this container" in message
        node = tmp_path / "hailo0"
        node.write_bytes(b"")
        got_kind, message = classify(exc, node)
    assert got_kind == kind, message
    assert fix in message
    # The message carries the library's own text.
    assert str(exc) in message


def test_status_comes_from_the_cause_not_the_text():
    exc = raised(74)
    assert type(exc).__name__ == "HailoRTException"
    assert str(exc) == "libhailort failed with error: 74 (HAILO_OUT_OF_PHYSICAL_DEVICES)"
    assert hailo.hailort_status(exc) == 74
    permission = raised(36)
    assert type(permission).__name__ == "HailoRTDriverOperationFailedException"
    assert "error 13" not in str(permission)
    assert hailo.hailort_status(permission) == 36


def test_permission_denied_is_confirmed_on_the_node(tmp_path, monkeypatch):
    node = tmp_path / "hailo0"
    node.write_bytes(b"")
    node.chmod(0o660)  # root:root here; the container's user is 10001 without the group
    monkeypatch.setattr(hailo.os, "geteuid", lambda: 10001)
    monkeypatch.setattr(hailo.os, "getegid", lambda: 10001)
    monkeypatch.setattr(hailo.os, "getgroups", lambda: [10001])
    kind, message = classify(raised(36), node)
    assert kind == "permission_denied"
    assert "mode 0660" in message and "uid 10001" in message and "group_add" in message
    monkeypatch.setattr(hailo.os, "getgroups", lambda: [10001, node.stat().st_gid])
    assert classify(raised(36), node)[0] == "driver_error"


@pytest.mark.parametrize(
    ("status", "kind", "fix"),
    [
        (74, "device_unavailable", "another process"),
        (76, "driver_mismatch", "same version"),
        (16, "firmware_mismatch", "hailofw"),
        (64, "driver_missing", "hailo-dkms"),
    ],
)
def test_open_failures_reach_health_and_metrics(make_client, hef, status, kind, fix):
    standin.CONTROL["open_status"] = status
    client = make_client(INFER_MODE="hailo", HEF_PATH=hef)
    health = client.get("/healthz").json()
    assert health["status"] == "unavailable"
    assert fix in health["reason"] and f"status {status}" in health["reason"]
    metrics = client.get("/metrics").text
    assert f'hailo_sidecar_backend_errors_total{{kind="{kind}"}} 1.0' in metrics
    r = client.post("/infer", json={"x": GOOD})
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1


def test_permission_denied_at_open_names_the_node_and_the_group(make_client, hef, tmp_path, monkeypatch):
    node = tmp_path / "hailo0"
    node.write_bytes(b"")
    node.chmod(0o600)
    monkeypatch.setattr(hailo.os, "geteuid", lambda: 10001)
    standin.CONTROL["open_status"] = 36
    client = make_client(INFER_MODE="hailo", HEF_PATH=hef, HAILO_DEVICE=node)
    reason = client.get("/healthz").json()["reason"]
    assert f"permission denied on {node}" in reason and "hailo group" in reason
    assert "Failure in hailort driver ioctl" in reason
    assert 'kind="permission_denied"' in client.get("/metrics").text


def test_hef_defects_as_hailort_reports_them(make_client, hef, tmp_path):
    corrupted = tmp_path / "corrupted.hef"
    corrupted.write_bytes(hef.read_bytes() + b"\0")  # one byte more: the length no longer matches
    health = make_client(INFER_MODE="hailo", HEF_PATH=corrupted).get("/healthz").json()
    assert "status 91 HAILO_HEF_FILE_CORRUPTED" in health["reason"]
    foreign = tmp_path / "foreign.hef"
    foreign.write_bytes(b"\x00\x01not a hef")
    health = make_client(INFER_MODE="hailo", HEF_PATH=foreign).get("/healthz").json()
    assert "status 92 HAILO_HEF_NOT_SUPPORTED" in health["reason"]
    h8 = standin.write_standin_hef(tmp_path / "h8.hef", arch="hailo8")
    standin.CONTROL["device_arch"] = "hailo8l"
    health = make_client(INFER_MODE="hailo", HEF_PATH=h8).get("/healthz").json()
    assert "recompile with the right --hw-arch" in health["reason"] and "status 93" in health["reason"]


@pytest.mark.parametrize("shape", [(100, 9, 1), (100, 1, 9), (100, 9)])
def test_input_shapes_that_keep_the_window_order_serve_the_same(make_client, tmp_path, shape):
    x = sample_windows(5)
    results = []
    for s in ((1, 100, 9), shape):
        backend = HailoBackend(standin.write_standin_hef(tmp_path / f"{len(results)}.hef", input_shape=s), 12)
        assert backend.load().input_shape == list(s)
        results.append(backend.infer(x))
        backend.close()
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    path = standin.write_standin_hef(tmp_path / "served.hef", input_shape=shape)
    assert make_client(INFER_MODE="hailo", HEF_PATH=path).post("/infer", json={"x": GOOD}).status_code == 200


@pytest.mark.parametrize("shape", [(9, 100, 1), (1, 9, 100), (100, 8, 1)])
def test_other_input_shapes_are_refused_at_load_naming_the_shape_and_the_fix(make_client, tmp_path, shape):
    path = standin.write_standin_hef(tmp_path / "t.hef", input_shape=shape)
    health = make_client(INFER_MODE="hailo", HEF_PATH=path).get("/healthz").json()
    assert health["status"] == "unavailable"
    assert f"has shape {list(shape)}" in health["reason"]
    assert "[N, 1, 100, 9]" in health["reason"] and "[H, W, C]" in health["reason"]


def test_hef_input_is_checked_against_the_release_manifest(make_client, tmp_path):
    release = tmp_path / "release"
    release.mkdir()
    path = standin.write_standin_hef(release / "model.hef", input_shape=(1, 100, 9))
    (release / "manifest.json").write_text(json.dumps({"input": {"hef_shape": [100, 9, 1]}}))
    health = make_client(INFER_MODE="hailo", HEF_PATH=path).get("/healthz").json()
    assert "manifest.json says the compiler parsed [100, 9, 1]" in health["reason"]
    (release / "manifest.json").write_text(json.dumps({"input": {"hef_shape": [1, 100, 9]}}))
    standin.reset()
    assert make_client(INFER_MODE="hailo", HEF_PATH=path).get("/healthz").json()["status"] == "ok"


def test_a_failed_frame_is_seen_although_wait_succeeds(hef):
    """HailoRT reports a frame's device failure to the job's callback only."""
    backend = HailoBackend(hef, 12)
    backend.load()
    standin.CONTROL.update({"fail_frames": 1, "fail_status": 87})
    from sidecar_app.errors import DeviceError

    with pytest.raises(DeviceError) as err:
        backend.infer(sample_windows(3))
    assert "HAILO_DRIVER_TIMEOUT" in err.value.message
    backend.close()
