"""Hailo mode against the stand-in HailoRT that follows HailoRT's own sources (lab/standins):
a bounded async queue, status numbers behind the exception classes, [H, W, C] shapes, buffers
through pybind11's mutable_data, 32 core ops per device, failures delivered to the callback,
and 4.23's status 74 for a missing driver."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hailo_platform import standin
from hailo_platform.pyhailort import _pyhailort
from hailo_platform.pyhailort.pyhailort import ExceptionWrapper, HailoRTTimeout

from sidecar_app.backends import hailo
from sidecar_app.backends.hailo import HailoBackend, classify
from sidecar_app.errors import DeviceError
from sidecar_app.tools.refmodel import sample_windows

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
    """What the backend avoids: 4.23's pipeline holds twice get_async_queue_size() (its pools and
    entry queue, async_pipeline_builder.cpp), so with a queue of 4 the ninth binding is refused
    with 82 and the model stays dead (63)."""
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

            assert cim.get_async_queue_size() == 4
            cim.wait_for_async_ready(100, frames_count=8)
            with pytest.raises(HailoRTTimeout):
                cim.wait_for_async_ready(100, frames_count=9)
            cim.run([bindings() for _ in range(8)], 2000)
            with pytest.raises(hp.HailoRTException) as full:
                cim.run([bindings() for _ in range(9)], 2000)
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
    with pytest.raises(DeviceError) as err:
        backend.infer(sample_windows(3))
    assert "HAILO_DRIVER_TIMEOUT" in err.value.message
    backend.close()


# --- buffers: pybind11's mutable_data (infer_model_api.cpp set_buffer, pybind11 v2.10.1 numpy.h) ---


def configured(hp, path):
    """A VDevice with the ROUND_ROBIN scheduler, as the sidecar opens it, and a model on it."""
    params = hp.VDevice.create_params()
    params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
    vdevice = hp.VDevice(params)
    model = vdevice.create_infer_model(str(path))
    model.set_batch_size(1)
    return vdevice, model


def test_a_read_only_buffer_is_refused_as_pybind11_refuses_it(hef):
    """set_buffer takes a py::array and calls mutable_data(): a view of immutable bytes (what
    np.frombuffer makes of a request body) raises ValueError, a C-contiguity break HailoRTException."""
    import hailo_platform as hp

    vdevice, model = configured(hp, hef)
    with model.configure() as cim:
        bindings = cim.create_bindings()
        shape = model.input().shape
        body = np.zeros(shape, np.float32).tobytes()
        with pytest.raises(ValueError, match=r"^array is not writeable$"):
            bindings.input().set_buffer(np.frombuffer(body, np.float32).reshape(shape))
        with pytest.raises(hp.HailoRTException, match="C_CONTIGUOUS"):
            bindings.input().set_buffer(np.zeros((shape[1], shape[0], *shape[2:]), np.float32).swapaxes(0, 1))
        bindings.input().set_buffer(np.frombuffer(bytearray(body), np.float32).reshape(shape))
    vdevice.release()


@pytest.mark.parametrize("path", ["/infer", "/infer/batch"])
def test_binary_bodies_serve_in_hailo_mode_with_the_outputs_of_json(make_client, hef, path):
    """A binary body is parsed into a read-only view of the request's bytes; the backend hands
    HailoRT a writeable copy, so it serves (200) and answers what the same windows as JSON get."""
    client = make_client(INFER_MODE="hailo", HEF_PATH=hef)
    x = sample_windows(1 if path == "/infer" else 5)
    as_json = {"x": x[0].tolist()} if path == "/infer" else {"windows": x.tolist()}
    j = client.post(path, json=as_json)
    b = client.post(
        path, content=x.astype("<f4").tobytes(), headers={"content-type": "application/octet-stream"}
    )
    assert (j.status_code, b.status_code) == (200, 200), b.text
    assert b.headers["x-infer-mode"] == "hailo"
    assert b.json() == j.json()


def test_read_only_windows_serve_as_writeable_ones_do(hef):
    """The backend makes read-only windows writeable (one copy per call) before HailoRT sees them."""
    backend = HailoBackend(hef, 12)
    backend.load()
    x = sample_windows(3)
    frozen = x.copy()
    frozen.flags.writeable = False
    np.testing.assert_array_equal(backend.infer(frozen)[0], backend.infer(x)[0])
    backend.close()


# --- 32 core ops per device (vdevice.cpp VDeviceBase::configure, vdma_device.cpp) -----------------


def test_the_device_refuses_the_33rd_core_op_and_only_a_new_vdevice_frees_them(tmp_path):
    import hailo_platform as hp

    hefs = [standin.write_standin_hef(tmp_path / f"{i}.hef", net=f"net{i}") for i in range(34)]
    vdevice, _ = configured(hp, hefs[0])
    for i in range(31):
        model = vdevice.create_infer_model(str(hefs[i]))
        model.set_batch_size(1)
        with model.configure():
            pass  # configured, then released by the application: the device keeps its core op
    # A configure that fails after the core op was made (the batch check) holds one as well.
    too_big = vdevice.create_infer_model(str(hefs[31]))
    too_big.set_batch_size(64)
    with pytest.raises(hp.HailoRTException) as batch:
        too_big.configure()
    assert hailo.hailort_status(batch.value) == 6
    assert standin.configured_core_ops() == 32
    # The same HEF again (same hash, network group and batch) is multiplexed: no new core op.
    again = vdevice.create_infer_model(str(hefs[0]))
    again.set_batch_size(1)
    again.configure().__exit__(None, None, None)
    assert standin.configured_core_ops() == 32
    full = vdevice.create_infer_model(str(hefs[32]))
    full.set_batch_size(1)
    with pytest.raises(hp.HailoRTException) as refused:
        full.configure()
    assert type(refused.value).__name__ == "HailoRTInvalidOperationException"
    assert refused.value.__cause__.args == ("6",)
    assert standin.hailort_log()[-1].endswith(
        "Can't add 1 core-ops from HEF. Currently 32 core-ops are configured; maximum allowed core-ops: 32."
    )
    assert standin.configured_core_ops() == 32, "a refused configure takes no core op"
    vdevice.release()
    fresh, model = configured(hp, hefs[33])
    model.configure().__exit__(None, None, None)
    assert standin.configured_core_ops() == 1
    fresh.release()


# --- failures delivered to the callback (pyhailort.py run_async's callback_wrapper) ---------------


@pytest.mark.parametrize(
    ("status", "kind", "fix"),
    [
        (16, "firmware_mismatch", "install hailofw"),
        (36, "driver_error", "dmesg | grep hailo"),
        (74, "device_unavailable", "fuser -v /dev/hailo0"),
        (82, "queue_full", "reopening"),
        (87, "driver_timeout", "pciex1_gen=3"),
        (8, "internal_failure", "hailort.log"),
    ],
)
def test_a_failure_delivered_to_the_callback_keeps_its_status(hef, status, kind, fix):
    """The callback's exception is built by create_exception_from_status and raised from nothing:
    no __cause__, the status only in its text ("libhailort failed with error: N (NAME)") or class."""
    import hailo_platform as hp

    vdevice, model = configured(hp, hef)
    model.input().set_format_type(hp.FormatType.FLOAT32)
    for name in model.output_names:
        model.output(name).set_format_type(hp.FormatType.FLOAT32)
    delivered = []
    standin.CONTROL.update({"fail_frames": 1, "fail_status": status})
    with model.configure() as cim:
        b = cim.create_bindings(output_buffers={n: np.empty(model.output(n).shape, np.float32)
                                                for n in model.output_names})  # fmt: skip
        b.input().set_buffer(np.zeros(model.input().shape, np.float32))
        cim.run_async([b], lambda completion_info: delivered.append(completion_info.exception)).wait(2000)
    vdevice.release()
    (exc,) = delivered
    assert exc.__cause__ is None
    assert hailo.hailort_status(exc) == status
    # Through the backend: the kind and fix of a raised exception of that status.
    standin.CONTROL.update({"fail_frames": 1, "fail_status": status})
    backend = HailoBackend(hef, 12)
    backend.load()
    with pytest.raises(DeviceError) as err:
        backend.infer(sample_windows(2))
    backend.close()
    assert err.value.kind == kind and fix in err.value.message, err.value.message
    assert err.value.kind == classify(raised(status), hef, opening=False)[0]


# --- status 74 at VDevice creation: the host tells a missing driver from another holder ----------


@pytest.mark.parametrize(
    ("remove", "kind", "fix"),
    [
        (["class/hailo_chardev", "module/hailo_pci"], "driver_missing", "dkms autoinstall -k $(uname -r)"),
        (["class/hailo_chardev"], "driver_missing", "dkms status hailo_pci"),
        (["class/hailo_chardev/hailo0"], "device_missing", "lspci | grep -i hailo"),
        ([], "device_unavailable", "another process or a stale container holds it"),
    ],
    ids=["driver not loaded", "no driver class", "driver without a device", "another holder"],
)
def test_status_74_at_open_is_told_apart_on_the_host(hef, sysfs, remove, kind, fix):
    """4.23 lists devices from /sys/class/hailo_chardev and returns none when it is absent
    (driver_os_specific.cpp list_devices), so a missing driver fails VDevice creation with 74
    (vdevice.cpp create_devices) exactly as a device another process holds does."""
    import hailo_platform as hp

    holder = None if remove else hp.VDevice()  # another user of the one device
    for path in remove:
        shutil.rmtree(sysfs / path)
    backend = HailoBackend(hef, 12)
    with pytest.raises(hailo.ModelLoadError) as err:
        backend.load()
    assert err.value.kind == kind and fix in err.value.message, err.value.message
    assert "status 74 HAILO_OUT_OF_PHYSICAL_DEVICES" in err.value.message
    if holder is not None:
        holder.release()


def test_the_host_look_names_what_is_missing(tmp_path, sysfs):
    """The module without its class folder (or the reverse) is a driver that did not load right."""
    shutil.rmtree(sysfs / "module" / "hailo_pci")
    kind, message = classify(raised(74), tmp_path / "hailo0", sysfs=sysfs)
    assert kind == "driver_missing" and f"{sysfs}/module/hailo_pci missing" in message
    # Not while serving: a 74 there is not a question of the driver.
    assert classify(raised(74), tmp_path / "hailo0", opening=False, sysfs=sysfs)[0] == "device_unavailable"


def test_a_missing_driver_reaches_health_with_the_dkms_fix(make_client, hef, sysfs):
    shutil.rmtree(sysfs / "class" / "hailo_chardev")
    client = make_client(INFER_MODE="hailo", HEF_PATH=hef)
    health = client.get("/healthz").json()
    assert health["status"] == "unavailable" and "dkms autoinstall" in health["reason"]
    assert 'hailo_sidecar_backend_errors_total{kind="driver_missing"} 1.0' in client.get("/metrics").text


# --- after a failure: the pipeline status HailoRT keeps (async_infer_runner.cpp) ----------------


def test_after_a_failed_push_the_pipeline_reports_the_aborts_63_and_waits_only_for_space(hef):
    """A frame fails on the device (87): the pipeline's status is 87, wait_for_async_ready still
    waits only for the pools' space (edge_elements.cpp can_push_buffer_upstream), the next push
    raises 87 and aborts the pipeline; AsyncPipeline::shutdown stores the abort's 63 over the 87,
    so every later push raises 63 and a job completed from then on reports 63 to its callback."""
    import hailo_platform as hp

    vdevice, model = configured(hp, hef)
    model.input().set_format_type(hp.FormatType.FLOAT32)
    for name in model.output_names:
        model.output(name).set_format_type(hp.FormatType.FLOAT32)
    standin.CONTROL.update({"fail_frames": 1, "fail_status": 87})
    delivered: list[int | None] = []

    def bindings(cim):
        b = cim.create_bindings(output_buffers={n: np.empty(model.output(n).shape, np.float32)
                                                for n in model.output_names})  # fmt: skip
        b.input().set_buffer(np.zeros(model.input().shape, np.float32))
        return b

    def statuses(completion_info):
        exc = completion_info.exception
        delivered.append(hailo.hailort_status(exc) if exc is not None else None)

    with model.configure() as cim:
        cim.run_async([bindings(cim)], statuses).wait(2000)
        cim.wait_for_async_ready(1000, frames_count=2 * cim.get_async_queue_size())
        statuses_raised = []
        for _ in range(2):
            with pytest.raises(hp.HailoRTException) as err:
                cim.run_async([bindings(cim)], statuses)
            statuses_raised.append(hailo.hailort_status(err.value))
    vdevice.release()
    assert delivered == [87]
    assert statuses_raised == [87, 63]


def test_a_stream_abort_never_hides_the_status_that_failed_first(tmp_path):
    """What an inference saw, in any order: 63 (HAILO_STREAM_ABORT, the abort's status stored over
    the first one) is reported only when nothing else is known; else the status that failed."""
    delivered_87 = ExceptionWrapper.create_exception_from_status(87)  # a callback's: no __cause__
    delivered_63 = ExceptionWrapper.create_exception_from_status(63)
    seen = ([delivered_87, raised(63)], [delivered_63, raised(87)], [delivered_63, delivered_87, raised(63)])
    for errors in seen:
        assert hailo.root_cause(errors, tmp_path)[0] == "driver_timeout", errors
    assert hailo.root_cause([delivered_63, raised(63)], tmp_path)[0] == "pipeline_aborted"


def test_a_vdevice_released_under_a_configured_model_is_recorded_and_the_backend_never_does_it(hef):
    """Releasing a VDevice while a model configured on it is alive is a use-after-free in HailoRT;
    the stand-in records it. The backend's close drops its model before its VDevice."""
    import hailo_platform as hp

    vdevice, model = configured(hp, hef)
    cim = model.configure().__enter__()
    vdevice.release()
    assert standin.released_under_models() == [1]
    cim.__exit__(None, None, None)
    standin.reset()
    backend = HailoBackend(hef, 12)
    backend.load()
    backend.infer(sample_windows(2))
    backend.close()
    assert standin.released_under_models() == [] and standin.held_vdevices() == 0
