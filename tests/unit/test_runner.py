"""The test command's runner (lab/scripts/stages.py) and the lab's run_stats callback
(lab/plugins/callback/run_stats.py, a link to the pull agent's
roles/pull_agent/files/hailo-pull-callbacks/run_stats.py), run for real: real pytest writing its
JUnit XML, real ansible-playbook runs against localhost, real child processes."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1].parent
sys.path.insert(0, str(ROOT / "lab" / "scripts"))
import stages  # noqa: E402

FAILING_TEST = """
def test_fine():
    assert True

def test_the_sidecar_answers():
    status = 503
    assert status == 200, "the Pi's sidecar answered 503"
"""


def test_a_failed_stages_report_is_repeated_above_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A long CI log is cut in the middle: the failure must be on its last screen. Two groups end
    # at about the same time; one has a pytest failure (reported from pytest's own JUnit XML), the
    # other a plain command that fails after printing 40 lines.
    (tmp_path / "test_pi.py").write_text(FAILING_TEST)
    runner = stages.Runner(logs=tmp_path / "logs")

    def pi_checks() -> bool:
        runner.stage("fine", ["true"])
        return runner.pytest("pi checks", str(tmp_path / "test_pi.py"))

    def other() -> bool:
        return runner.stage("other", ["bash", "-c", "seq 1 40; exit 3"])

    assert runner.together(pi_checks, other) is False
    assert runner.summary() is False
    out = capsys.readouterr().out
    again = out[out.index("=== failed stages, again") :]
    report, table = again.split("=== summary")
    assert "--- pi checks: FAIL (exit 1)" in report
    assert "test_the_sidecar_answers" in report and "the Pi's sidecar answered 503" in report
    assert "test_fine" not in report  # only what failed
    assert "--- other: FAIL (exit 3)" in report and "\n40\n" in report and "\n10\n" not in report
    assert "fine" not in report.replace("test_fine", "")
    assert re.search(r"fine\s+pass", table) and re.search(r"other\s+FAIL \(exit 3\)", table)
    assert "stages: 1 passed, 2 failed" in out
    # Each group's output is printed whole, once.
    assert (
        out.count("=============== pi_checks (finished)") == 1
        and out.count("=============== other (finished)") == 1
    )
    assert (tmp_path / "logs" / "other.log").read_text().splitlines()[-1] == "40"


def test_groups_run_at_the_same_time(tmp_path: Path) -> None:
    # Two groups that each wait on the other's mark: they finish only if both run at once.
    a, b = tmp_path / "a", tmp_path / "b"
    runner = stages.Runner(logs=tmp_path / "logs")
    runner._local.out = io.StringIO()
    wait = "for i in $(seq 100); do test -e {0} && exit 0; sleep 0.1; done; exit 1"

    def first() -> bool:
        return runner.stage("a", ["bash", "-c", f"touch {a}; " + wait.format(b)])

    def second() -> bool:
        return runner.stage("b", ["bash", "-c", f"touch {b}; " + wait.format(a)])

    assert runner.together(first, second)
    assert runner.summary()


def test_a_python_stage_that_raises_fails_with_its_message(tmp_path: Path) -> None:
    runner = stages.Runner(logs=tmp_path)
    runner._local.out = io.StringIO()

    def broken() -> bool:
        raise RuntimeError("no registry on 127.0.0.1:5000")

    assert runner.stage("broken", broken) is False
    assert runner.results[-1].report == ["RuntimeError: no registry on 127.0.0.1:5000"]


def test_niced_stages_run_at_a_lower_priority(tmp_path: Path) -> None:
    runner = stages.Runner(logs=tmp_path)
    runner._local.out = io.StringIO()
    with runner.niced(7):
        runner.stage("niced", ["bash", "-c", f"nice > {tmp_path}/niced.out"])
    runner.stage("plain", ["bash", "-c", f"nice > {tmp_path}/plain.out"])
    base = os.nice(0)
    assert int((tmp_path / "niced.out").read_text()) == base + 7
    assert int((tmp_path / "plain.out").read_text()) == base


def test_an_interrupted_run_stops_its_children(tmp_path: Path) -> None:
    # Ctrl-C (or CI's SIGTERM) must not leave a playbook or a pytest running behind the runner.
    script = tmp_path / "run.py"
    pidfile = tmp_path / "child.pid"
    script.write_text(f"""
import sys
sys.path.insert(0, {str(ROOT / "lab" / "scripts")!r})
import stages
r = stages.Runner()
with stages.interruptible(r):
    r.stage("sleeper", ["bash", "-c", "echo $$ > {pidfile}; exec sleep 60"])
""")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL)
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.1)
    child = int(pidfile.read_text())
    proc.terminate()
    assert proc.wait(timeout=20) == 130
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"the stage's command {child} still runs after the runner ended")


PLAYBOOK = """
- name: Two hosts, one changes, one fails
  hosts: all
  gather_facts: false
  tasks:
    - name: A change on a
      ansible.builtin.command: "true"
      changed_when: inventory_hostname == 'a'
    - name: Fails on b
      ansible.builtin.fail:
        msg: b fails
      when: inventory_hostname == 'b'
    - name: Skipped everywhere
      ansible.builtin.debug:
        msg: never
      when: false
"""
RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)", re.M
)


def test_the_run_stats_callback_writes_the_recaps_counts(tmp_path: Path) -> None:
    # The oracle is ansible-playbook's own PLAY RECAP (read here, in a test, and nowhere else).
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "hosts.ini").write_text("a ansible_connection=local\nb ansible_connection=local\n")
    stats_file = tmp_path / "out" / "stats.json"
    stats_file.parent.mkdir()
    env = stages.env_with_venv(stages.ansible_stats_env(stats_file, {}))
    env["ANSIBLE_PYTHON_INTERPRETER"] = sys.executable
    cmd = [
        str(stages.VENV_BIN / "ansible-playbook"),
        "-i",
        str(tmp_path / "hosts.ini"),
        str(tmp_path / "play.yml"),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    counts = stages.read_stats(stats_file)
    assert counts is not None, proc.stdout
    names = ["ok", "changed", "unreachable", "failures", "skipped"]
    recap = {
        m[1]: dict(zip(names, map(int, m.groups()[1:]), strict=True)) for m in RECAP.finditer(proc.stdout)
    }
    assert set(counts) == set(recap) == {"a", "b"}
    for host, want in recap.items():
        assert {k: counts[host][k] for k in want} == want
    assert counts["a"]["changed"] == 1 and counts["b"]["failures"] == 1
    assert [p.name for p in stats_file.parent.iterdir()] == ["stats.json"]  # no temporary file left


COUNTED_ROLE = """
- name: Three items, the second skipped
  ansible.builtin.command: "echo {{ item }}"
  loop: [1, 2, 3]
  when: item != 2
  changed_when: false
- name: On the controller only
  ansible.builtin.set_fact:
    seen: true
"""
COUNTED_PLAY = """
- name: Module runs per role
  hosts: all
  gather_facts: false
  tasks:
    - name: One module run outside any role
      ansible.builtin.command: "true"
      changed_when: false
    - name: The role
      ansible.builtin.include_role:
        name: counted
    - name: On the controller only
      ansible.builtin.debug:
        msg: hi
"""


def test_the_run_stats_callback_counts_module_runs_per_role(tmp_path: Path) -> None:
    # What a warm run costs per host and role (docs/scale.md): each loop item that ran is one, a
    # skipped item, an include and the controller's own actions are none.
    (tmp_path / "roles" / "counted" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "counted" / "tasks" / "main.yml").write_text(COUNTED_ROLE)
    (tmp_path / "play.yml").write_text(COUNTED_PLAY)
    (tmp_path / "hosts.ini").write_text("a ansible_connection=local\n")
    stats_file = tmp_path / "stats.json"
    env = stages.env_with_venv(stages.ansible_stats_env(stats_file, {}))
    env.update({"ANSIBLE_PYTHON_INTERPRETER": sys.executable, "ANSIBLE_ROLES_PATH": str(tmp_path / "roles")})
    cmd = [str(stages.VENV_BIN / "ansible-playbook"), "-i", "hosts.ini", "play.yml"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(stats_file.read_text())["module_runs"] == {"a": {"play": 1, "counted": 2}}


def test_no_path_no_file(tmp_path: Path) -> None:
    # Enabled but not told where: the run writes nothing and still succeeds.
    (tmp_path / "play.yml").write_text("- hosts: localhost\n  gather_facts: false\n  tasks: []\n")
    env = stages.env_with_venv({"ANSIBLE_CALLBACKS_ENABLED": stages.STATS_CALLBACK})
    env.pop("HAILO_RUN_STATS", None)
    cmd = [str(stages.VENV_BIN / "ansible-playbook"), str(tmp_path / "play.yml")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not list(tmp_path.glob("*.json"))


def test_read_stats_of_a_run_that_wrote_nothing_or_garbage(tmp_path: Path) -> None:
    assert stages.read_stats(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert stages.read_stats(tmp_path / "bad.json") is None
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    assert stages.read_stats(tmp_path / "list.json") is None
