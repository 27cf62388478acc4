"""playbooks/gpusrv.yml run again on the lab's GPUSrv: bad variables stop it in preflight before
any change, naming the variable; the runner token never reaches Ansible's output, even at -vvv."""

from __future__ import annotations

import hashlib
import json

import pytest
from labplay import GPUSRV, BadRuns, bad_variable_runs, host, play

PLAYBOOK = "playbooks/gpusrv.yml"
TOKEN = "lab-secret-token-d41d8cd98f00b204"


@pytest.fixture(scope="module")
def gpusrv():
    return host(GPUSRV)


BAD = {
    "unknown runner state": ({"ci_runner_state": "paused"}, "ci_runner_state"),
    "string for a dict": (
        {"docker_engine_daemon_options": "log-driver=json-file"},
        "docker_engine_daemon_options",
    ),
    "list for a dict": ({"docker_engine_daemon_options": ["log-driver"]}, "docker_engine_daemon_options"),
    "string for a bool": ({"ci_runner_docker_access": "sometimes"}, "ci_runner_docker_access"),
    "labels not a list of names": ({"ci_runner_labels": ["ok", "bad label"]}, "ci_runner_labels"),
    "missing scope": ({"ci_runner_scope_url": ""}, "ci_runner_scope_url"),
    "unknown driver": ({"buildx_qemu_builder_driver": "kubernetes"}, "buildx_qemu_builder_driver"),
    "missing registry": ({"sidecar_image_registry": ""}, "sidecar_image_registry"),
    "model without a version": (
        {"hef_compile_models": [{"name": "m", "onnx": "a.onnx", "calib": "c.npy", "config_version": "c"}]},
        "hef_compile_models",
    ),
    "insecure registry with scheme": (
        {"docker_engine_insecure_registries": ["http://10.0.0.5:5000"]},
        "docker_engine_insecure_registries",
    ),
}


@pytest.fixture(scope="module")
def bad_runs(gpusrv) -> BadRuns:
    return bad_variable_runs(gpusrv, PLAYBOOK, {case: extra for case, (extra, _) in BAD.items()})


def test_bad_variables_change_nothing_on_the_host(bad_runs):
    assert bad_runs.changed == [], "a bad-variable run changed the host"


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_variable_fails_in_preflight_before_any_change(bad_runs, case):
    name = BAD[case][1]
    run = bad_runs.runs[case]
    assert run.rc != 0, run.out[-3000:]
    assert name in run.text, f"the message does not name {name}"
    assert run.changed(GPUSRV) == 0
    # Nothing after the preflight play ran.
    assert "Provision GPUSrv" not in run.out


def test_runner_token_never_reaches_the_output_even_at_vvv(gpusrv):
    """Unregister and register again with a known token at -vvv: it is used, and never printed
    by Ansible, nor logged on the host (sudo logs command lines to the journal)."""
    since = gpusrv.run("date +%s").stdout.strip()
    env = {"HAILO_RUNNER_TOKEN": TOKEN}
    removed = play(PLAYBOOK, "-vvv", "--tags", "ci_runner", "-e", "ci_runner_state=absent", env=env)
    assert removed.rc == 0, removed.out[-3000:]
    assert not gpusrv.file("/opt/actions-runner").exists
    # buildx_qemu too: the runner's builder went with its home folder.
    added = play(PLAYBOOK, "-vvv", "--tags", "ci_runner,buildx_qemu", env=env)
    assert added.rc == 0, added.out[-3000:]
    reg = json.loads(gpusrv.file("/opt/actions-runner/.runner").content_string)
    assert reg["token_sha256"] == hashlib.sha256(TOKEN.encode()).hexdigest(), "the token did not arrive"
    for run in (removed, added):
        assert TOKEN not in run.out
    journal = gpusrv.run(f"journalctl --no-pager -o cat --since @{since}")
    assert journal.rc == 0 and "github-runner" in journal.stdout, "the journal was not read"
    assert TOKEN not in journal.stdout
    assert gpusrv.service("actions-runner").is_running


def test_compile_without_a_dfc_wheel_skips_with_its_message():
    run = play(PLAYBOOK, "--tags", "hef_compile", "-e", "hef_compile_dfc_wheel=")
    assert run.rc == 0, run.out[-3000:]
    assert "hef_compile skipped: no Dataflow Compiler wheel is configured" in run.out
    assert run.changed(GPUSRV) == 0
