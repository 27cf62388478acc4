"""The lab's own tools: the summary's checks and rendering (lab/scripts/summary.py) and the
stand-in fidelity comparison (sidecar_app/tools/fidelity.py against lab/scripts/fidelity.py)."""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"lab_{name}", ROOT / "lab" / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


summary = load("summary")
fidelity = load("fidelity")
stages = load("stages")

SHA = "ab" * 32
IMAGE = {"image": "127.0.0.1:5000/hailo/sidecar:0.2.0", "revision": "0123456789abcdef",
         "platform": "linux/arm64", "ref": "127.0.0.1:5000/hailo/sidecar@sha256:" + "c" * 64}  # fmt: skip
RELEASE = {"profile": "onnx", "config_version": "lab-1", "image": IMAGE["ref"],
           "model": {"name": "imu-encoder", "version": "1.0.0", "file": "model.onnx",
                     "sha256": SHA}}  # fmt: skip


def host(name: str, group: str, **health: Any) -> dict[str, Any]:
    h = {"status": "ok", "serving_mode": "onnx", "config_version": "lab-1", "model_sha256": SHA, **health}
    return {"host": name, "group": group, "url": f"http://127.0.0.1:1900{len(name)}", "health": h,
            "release": copy.deepcopy(RELEASE)}  # fmt: skip


def lab(*hosts: dict[str, Any]) -> dict[str, Any]:
    return {"image": IMAGE, "releases": [], "hosts": list(hosts)}


def test_a_healthy_lab_has_no_problems_and_renders_a_curl_line() -> None:
    data = lab(host("lab-pi-1", "pi"), host("lab-pi-2", "pi"))
    assert summary.problems(data) == []
    text = "\n".join(summary.render(data, [{"step": "pi.yml", "seconds": 12, "changed": 0}]))
    assert "pi.yml" in text and "changed=0" in text
    assert "curl -sS -X POST http://127.0.0.1:19008/infer" in text
    assert f"sha256 {SHA}" in text and "(git 0123456789ab, linux/arm64)" in text


@pytest.mark.parametrize(
    ("health", "expected"),
    [
        ({"status": "unreachable (refused)"}, "lab-pi-1: sidecar at http://127.0.0.1:19008 is unreachable"),
        ({"model_sha256": "0" * 64}, f"lab-pi-1: serves {'0' * 64}, deployed {SHA}"),
        ({"config_version": "lab-2"}, "lab-pi-1: config lab-2, deployed lab-1"),
    ],
    ids=["down", "other model", "other config"],
)
def test_each_problem_is_named(health: dict[str, Any], expected: str) -> None:
    found = summary.problems(lab(host("lab-pi-1", "pi", **health), host("lab-pi-2", "pi")))
    assert len(found) == 1 and found[0].startswith(expected), found


@pytest.fixture
def standin_run(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stand-in observed through sidecar_app/tools/fidelity.py, as a device run would be."""
    manifest = {"hw_arch": "hailo8", "input": {"hef_shape": [100, 9, 1]},
                "outputs": {"latent": [64], "motif_scores": [12]}}  # fmt: skip
    lab_obs = fidelity.standin(manifest)
    device = copy.deepcopy(lab_obs)
    device["texts"] = {
        "version": "HailoRT-CLI version 4.23.0",
        "identify": "Executing on device: 0001:01:00.0\n"
        + "\n".join(f"{label}: x" for label in fidelity.IDENTIFY_LABELS),
        "parse_hef": lab_obs["texts"]["parse_hef"],
        "driver_version": "4.23.0\n",
    }
    return device, lab_obs


Run = tuple[dict[str, Any], dict[str, Any]]


def test_the_standin_observes_what_the_backend_relies_on(standin_run: Run) -> None:
    _, obs = standin_run
    assert obs["input"]["shape"] == [100, 9, 1] and sorted(obs["outputs"].values()) == [[12], [64]]
    assert obs["async_queue_size"] >= 1
    # pyhailort.py has no class of its own for 74: the base class, status in the cause.
    assert obs["second_vdevice"]["class"] == "HailoRTException"
    assert obs["second_vdevice"]["status"] == 74
    # 4.23's pipeline holds twice the queue (async_pipeline_builder.cpp): found by waits alone,
    # then pushed to, and one frame past it is 82 and the model's end (63).
    assert obs["wait_bound"] == 2 * obs["async_queue_size"]
    assert obs["wait_past_bound"]["status"] == 4
    assert obs["push_to_bound"] is None
    assert obs["push_past_bound"]["status"] == 82
    assert obs["push_after_that"]["status"] == 63


def test_a_device_like_the_standin_compares_the_same(standin_run: Run) -> None:
    device, obs = standin_run
    lines = fidelity.compare(device, obs)
    assert [ln for ln in lines if not ln.startswith("same: ")] == []
    assert len(lines) >= 16


def test_each_difference_is_reported(standin_run: Run) -> None:
    device, obs = standin_run
    device["async_queue_size"] = obs["async_queue_size"] * 2
    device["wait_bound"] = obs["async_queue_size"]  # a pipeline that holds the queue alone
    device["push_past_bound"]["status"] = 8
    device["texts"]["driver_version"] = "unknown"
    differs = [ln for ln in fidelity.compare(device, obs) if ln.startswith("DIFFERS")]
    assert [ln.split(":")[1].strip() for ln in differs] == [
        "async queue size",
        "frames an idle model is granted (wait_for_async_ready)",
        "push_past_bound",
        "driver version file form",
    ]


@pytest.mark.parametrize(
    ("args", "rc", "out"),
    [
        (["fw-control", "identify"], 0, ""),
        (["scan"], 0, "Hailo devices not found\n"),
        (["benchmark", "model.hef"], 74, ""),
    ],
)
def test_the_standin_cli_without_a_device_answers_as_hailortcli_4_23(tmp_path: Path, args, rc, out) -> None:
    """With no device listed, 4.23's `fw-control identify` runs on none and succeeds silently
    (hailortcli/command.cpp DeviceCommand), `scan` says so and succeeds (scan_command.cpp), and
    only what opens a VDevice fails with 74."""
    import hailort_apt

    cli = tmp_path / "hailortcli"
    cli.write_text(hailort_apt.HAILORTCLI.format(v="4.23.0").replace("/dev/hailo0", str(tmp_path / "hailo0")))
    done = subprocess.run(["sh", str(cli), *args], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (rc, out), done.stderr
    assert ("HAILO_OUT_OF_PHYSICAL_DEVICES(74)" in done.stderr) == (rc == 74)


# The lab's connection synchrony.hailo_lab.docker (lab/plugins/connection/docker.py), through
# ansible itself with this checkout's ansible.cfg: a docker CLI test double first on PATH runs
# each `docker exec`'s command here, after failing the first FAILS of them the way Docker reports
# runc's failure (the message on the exec's stdout, exit 126).
FAKE_DOCKER = r"""#!/bin/sh
# Test double of the docker CLI for tests/unit/test_lab_tools.py: `docker exec [OPTS] NAME CMD...`
[ "$1" = exec ] || exit 1
shift
while :; do case "$1" in -u | -e | -w) shift 2 ;; -*) shift ;; *) break ;; esac; done
shift
n=$(($(cat "$CALLS" 2>/dev/null || echo 0) + 1)); echo "$n" >"$CALLS"
if [ "$n" -le "$FAILS" ]; then
  # Ansible's exec closes stdin after writing; Mitogen keeps it open for its bootstrap (KEEP_STDIN).
  [ -n "$KEEP_STDIN" ] || cat >/dev/null
  printf '%s\r\n' "$MESSAGE"
  exit 126
fi
exec "$@"
"""
RUNC = ("OCI runtime exec failed: exec failed: unable to start container process: waiting for init "
        "preliminary setup: read init-p: connection reset by peer: unknown")  # fmt: skip


def fake_docker(tmp_path: Path, on_path: Any, fails: int, message: str) -> dict[str, str]:
    """The environment that puts the docker CLI double first on PATH."""
    return {**on_path("docker", FAKE_DOCKER), "CALLS": str(tmp_path / "calls"), "FAILS": str(fails),
            "MESSAGE": message, "LAB_EXEC_RETRY_LOG": str(tmp_path / "retries.log")}  # fmt: skip


def ansible_through_fake_docker(
    tmp_path: Path, on_path: Any, fails: int, message: str = RUNC, mitogen: bool = False
) -> tuple[Any, int]:
    env = {**os.environ, **fake_docker(tmp_path, on_path, fails, message),
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"), "HOME": str(tmp_path),
           **(stages.mitogen_env() if mitogen else {}), "KEEP_STDIN": "1" if mitogen else ""}  # fmt: skip
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "all", "-i", "lab-x,", "-v",
         "-e", "ansible_connection=synchrony.hailo_lab.docker",
         "-e", f"ansible_python_interpreter={sys.executable}",
         "-m", "ansible.builtin.command", "-a", "echo ran-in-the-container"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip
    return proc, int((tmp_path / "calls").read_text())


def test_the_lab_connection_runs_again_an_exec_runc_did_not_start(tmp_path: Path, on_path: Any) -> None:
    proc, calls = ansible_through_fake_docker(tmp_path, on_path, fails=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ran-in-the-container" in proc.stdout
    assert calls == 3
    assert proc.stdout.count("runc did not start the exec") == 2, proc.stdout
    assert len((tmp_path / "retries.log").read_text().splitlines()) == 2


def test_under_mitogen_the_lab_connection_runs_again_the_exec_that_starts_its_python(
    tmp_path: Path, on_path: Any
) -> None:
    # Mitogen's docker connection starts one Python per host with one `docker exec` (ansible_mitogen
    # connection.py, _connect_docker; mitogen/docker.py): runc's failure there is retried as well.
    proc, calls = ansible_through_fake_docker(tmp_path, on_path, fails=2, mitogen=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ran-in-the-container" in proc.stdout
    assert calls == 3
    # ": connect:": Mitogen's one exec was retried (Ansible's own connection retries ": exec ...").
    assert proc.stdout.count(": connect: runc did not start the exec") == 2, proc.stdout


def test_the_lab_connection_gives_up_after_three_tries(tmp_path: Path, on_path: Any) -> None:
    proc, calls = ansible_through_fake_docker(tmp_path, on_path, fails=5)
    assert proc.returncode != 0
    assert calls == 3
    assert "read init-p: connection reset by peer" in proc.stdout + proc.stderr


def test_the_lab_connection_does_not_repeat_a_command_that_ran(tmp_path: Path, on_path: Any) -> None:
    # Exit 126 from the command itself (sh: cannot execute): it ran, so it is not run again.
    proc, calls = ansible_through_fake_docker(
        tmp_path, on_path, fails=1, message="sh: 1: /opt/x: Permission denied"
    )
    assert proc.returncode != 0
    assert calls == 1
    assert "runc did not start the exec" not in proc.stdout


@pytest.mark.parametrize(("fails", "rc", "calls"), [(2, 0, 3), (5, 126, 3)])
def test_the_lab_tests_testinfra_hosts_retry_the_same_way(
    tmp_path: Path, on_path: Any, monkeypatch: pytest.MonkeyPatch, fails: int, rc: int, calls: int
) -> None:
    for name, value in fake_docker(tmp_path, on_path, fails, RUNC).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(time, "sleep", lambda _: None)
    sys.path.insert(0, str(ROOT / "tests" / "lab"))
    try:
        import labplay
    finally:
        sys.path.remove(str(ROOT / "tests" / "lab"))
    out = labplay.host("lab-x").run("echo ran-in-the-container")
    assert (out.rc, int((tmp_path / "calls").read_text())) == (rc, calls)
    assert ("ran-in-the-container" in out.stdout) == (rc == 0)


def test_the_lab_runs_under_mitogen_unless_a_strategy_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make lab` and the test command's lab stages take Mitogen's strategy from the venv's own
    ansible_mitogen (the plugin folder Mitogen's docs name); an operator's ANSIBLE_STRATEGY, even
    Ansible's own `linear`, is left to win."""
    env = stages.lab_strategy_env({})
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear"
    assert (Path(env["ANSIBLE_STRATEGY_PLUGINS"]) / "mitogen_linear.py").is_file()
    assert stages.lab_strategy_env({"ANSIBLE_STRATEGY": "linear"}) == {}
    # Set empty (a CI variable that expands to nothing): Ansible refuses an empty name; Mitogen's.
    assert stages.lab_strategy_env({"ANSIBLE_STRATEGY": ""})["ANSIBLE_STRATEGY"] == "mitogen_linear"
    free = stages.lab_strategy_env({"ANSIBLE_STRATEGY": "mitogen_free"})
    assert free["ANSIBLE_STRATEGY"] == "mitogen_free" and "ANSIBLE_STRATEGY_PLUGINS" in free
    # A venv without Mitogen (an older checkout's): Ansible's own strategy, not a failed run.
    monkeypatch.setattr(stages, "VENV_BIN", Path("/nonexistent/.venv/bin"))
    assert stages.lab_strategy_env({}) == {}
