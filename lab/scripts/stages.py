"""The stage runner of the test command (lab/scripts/test.py) and the lab (lab/scripts/lab.py).

Standard library only: it runs before the venv exists (the test command's first stage creates it).

  Runner.stage(name, cmd)   a visible step: its output on the terminal (or its group's log) and,
                            with a log folder, in LOGS/<name>.log; its time, result and, for an
                            Ansible run, the sum of changed over its hosts (read from the
                            run_stats callback's JSON, never from the PLAY RECAP text) are recorded
  Runner.together(groups)   groups of stages at the same time, each a function that calls stage();
                            a group's output is kept in a log and printed whole when it ends
  Runner.summary()          the failed stages' reports again (a long run's log may be cut in the
                            middle: the failure is then still on its last screen), then one line
                            per stage with its result and time

A failed pytest stage is reported from its JUnit XML (`--junitxml`, which pytest() adds), an
other failed stage by the last lines of its output.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
# Where make setup links the lab's own collection, synchrony.hailo_lab (its connection, its callback).
LAB_COLLECTIONS = ROOT / ".ansible" / "collections"
# The lab's callback that writes a run's per-host counts as JSON (lab/plugins/callback/run_stats.py,
# a link to the pull agent's roles/pull_agent/files/hailo-pull-callbacks/run_stats.py).
STATS_CALLBACK = "synchrony.hailo_lab.run_stats"
REPORT_LINES = 60


def env_with_venv(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every stage runs in: the venv's tools first, this checkout's ansible.cfg,
    no colours (logs are read by people and by this runner)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))
    env.update({"PY_COLORS": "0", "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1"})
    env.update(extra or {})
    return env


def installed_collections_path(collections: Path) -> str:
    """ANSIBLE_COLLECTIONS_PATH for a run of an installed collection on the lab: that install first
    (it must win over the checkout's), the lab's own collection after it (the lab inventory's
    connection is synchrony.hailo_lab.docker)."""
    return f"{collections}:{LAB_COLLECTIONS}"


def ansible_stats_env(path: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """Settings that make ansible-playbook write its per-host counts to PATH (the run_stats
    callback), added to the callbacks ENV already enables."""
    base = env if env is not None else os.environ
    enabled = [c for c in base.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",") if c.strip()]
    if STATS_CALLBACK not in enabled:
        enabled.append(STATS_CALLBACK)
    return {"ANSIBLE_CALLBACKS_ENABLED": ",".join(enabled), "HAILO_RUN_STATS": str(path)}


def mitogen_env() -> dict[str, str]:
    """Settings that run ansible-playbook under Mitogen for Ansible (the venv's `mitogen` package):
    its linear strategy, which keeps one Python interpreter per host for the whole run. Its SSH
    and docker connections take the place of Ansible's `ssh` and `docker` by those names."""
    found = _mitogen_strategies()
    if found is None:
        raise SystemExit(f"Mitogen for Ansible is not in {VENV_BIN.parent} (make setup installs it)")
    return {"ANSIBLE_STRATEGY_PLUGINS": str(found), "ANSIBLE_STRATEGY": "mitogen_linear"}


def _mitogen_strategies() -> Path | None:
    """The venv's ansible_mitogen strategy folder (the one Mitogen's docs name), if it has one."""
    found = sorted(VENV_BIN.parent.glob("lib/python3*/site-packages/ansible_mitogen/plugins/strategy"))
    return found[-1] if found else None


def lab_strategy_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The strategy of the lab's Ansible runs (`make lab`, the test command's lab stages): Mitogen
    for Ansible's when the venv has it (docs/scale.md: the same checks, a third less wall time), unless
    ANSIBLE_STRATEGY is set already: `ANSIBLE_STRATEGY=linear make lab` runs Ansible's own."""
    chosen = (base if base is not None else os.environ).get("ANSIBLE_STRATEGY", "")
    if _mitogen_strategies() is None:
        return {}
    if not chosen:  # unset, or set empty (which Ansible would refuse)
        return mitogen_env()
    # Another of Mitogen's strategies (mitogen_free, ...) needs its plugin folder too.
    return {**mitogen_env(), "ANSIBLE_STRATEGY": chosen} if chosen.startswith("mitogen_") else {}


def read_stats(path: Path) -> dict[str, dict[str, int]] | None:
    """host -> counts (ok, changed, failures, unreachable, skipped, rescued, ignored) of the run that
    wrote PATH; None when it wrote nothing (the run ended before its stats)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    hosts = data.get("hosts") if isinstance(data, dict) else None
    return hosts if isinstance(hosts, dict) else None


def junit_report(path: Path, limit: int = REPORT_LINES) -> list[str]:
    """The failed and erroring tests of a pytest run from its JUnit XML: id, message, the end of
    the traceback; at most LIMIT lines."""
    try:
        root = ET.parse(path).getroot()  # noqa: S314 - pytest's own report, written by this run
    except (OSError, ET.ParseError):
        return []
    lines: list[str] = []
    for case in root.iter("testcase"):
        for kind in ("failure", "error"):
            for problem in case.findall(kind):
                test_id = "::".join(p for p in (case.get("classname", ""), case.get("name", "")) if p)
                lines.append(f"{kind.upper()} {test_id}: {problem.get('message', '').strip()[:300]}")
                body = (problem.text or "").rstrip().splitlines()
                lines.extend(f"    {line}" for line in body[-12:])
    return lines[-limit:] if len(lines) > limit else lines


def slug(name: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-zA-Z0-9]", "-", name)).strip("-")


@dataclass
class Result:
    name: str
    seconds: int
    ok: bool
    rc: int
    changed: int | None = None
    report: list[str] = field(default_factory=list)

    @property
    def result(self) -> str:
        return "pass" if self.ok else f"FAIL (exit {self.rc})"

    def as_json(self) -> dict[str, Any]:
        return {"step": self.name, "seconds": self.seconds, "changed": self.changed, "result": self.result}


class Runner:
    """Stages, groups side by side, and the summary of both."""

    def __init__(self, logs: Path | None = None) -> None:
        self.logs = logs
        self.results: list[Result] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._children: set[subprocess.Popen[bytes]] = set()

    # -- output: the terminal, or the log of the group this thread runs ---------------------------
    @property
    def out(self) -> IO[str]:
        return getattr(self._local, "out", None) or sys.stdout

    @contextlib.contextmanager
    def niced(self, level: int = 10) -> Iterator[None]:
        """The stages this thread starts meanwhile run at a lower priority (not the containers
        Docker starts for them)."""
        self._local.nice = level
        try:
            yield
        finally:
            self._local.nice = 0

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # -- one stage --------------------------------------------------------------------------------
    def stage(
        self,
        name: str,
        cmd: Sequence[str] | Callable[[], bool],
        *,
        env: dict[str, str] | None = None,
        ansible: bool = False,
        junit: Path | None = None,
    ) -> bool:
        """Runs CMD (argv, or a Python callable returning success) as the stage NAME. ANSIBLE: CMD
        runs ansible-playbook once; its changed count is recorded. JUNIT: the pytest XML to report
        a failure from."""
        self.say()
        self.say(f"=== {name}")
        t0 = time.monotonic()
        log_path = None
        if self.logs is not None:
            self.logs.mkdir(parents=True, exist_ok=True)
            log_path = self.logs / f"{slug(name)}.log"
        tail: list[str] = []
        changed: int | None = None
        if callable(cmd):
            try:
                ok, rc = bool(cmd()), 0
            except Exception as exc:  # a stage written in Python fails like a command: reported
                self.say(f"{type(exc).__name__}: {exc}")
                tail = [f"{type(exc).__name__}: {exc}"]
                ok = False
            rc = 0 if ok else 1
        else:
            full_env = env_with_venv(env)
            stats = None
            if ansible:
                stats = (self.logs or Path(tempfile.gettempdir())) / f"{slug(name)}.stats.json"
                stats.unlink(missing_ok=True)
                full_env.update(ansible_stats_env(stats, full_env))
            rc, tail = self._run(list(cmd), full_env, log_path)
            ok = rc == 0
            if stats is not None:
                counts = read_stats(stats)
                changed = None if counts is None else sum(c.get("changed", 0) for c in counts.values())
        report: list[str] = []
        if not ok:
            report = (junit_report(junit) if junit else []) or tail[-30:]
        result = Result(name, round(time.monotonic() - t0), ok, rc, changed, report)
        with self._lock:
            self.results.append(result)
        return ok

    def _run(self, cmd: list[str], env: dict[str, str], log_path: Path | None) -> tuple[int, list[str]]:
        """CMD's exit status and its last lines; its output goes to this thread's output and the log."""
        nice = getattr(self._local, "nice", 0)
        if nice:
            cmd = ["nice", "-n", str(nice), *cmd]
        tail: list[str] = []
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(log_path.open("w")) if log_path else None
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            with self._lock:
                self._children.add(proc)
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode(errors="replace")
                self.out.write(line)
                if log:
                    log.write(line)
                tail.append(line.rstrip("\n"))
                if len(tail) > 200:
                    del tail[:100]
            self.out.flush()
            rc = proc.wait()
            with self._lock:
                self._children.discard(proc)
        return rc, tail

    def pytest(self, name: str, *args: str, env: dict[str, str] | None = None) -> bool:
        """A pytest stage; its failures are reported from its JUnit XML."""
        folder = self.logs or Path(tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)
        junit = folder / f"{slug(name)}.junit.xml"
        junit.unlink(missing_ok=True)
        cmd = [str(VENV_BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", "--tb=short",
               "--durations=10", f"--junitxml={junit}", *args]  # fmt: skip
        return self.stage(name, cmd, env=env, junit=junit)

    # -- groups side by side ----------------------------------------------------------------------
    def together(self, *groups: Callable[[], bool]) -> bool:
        """Runs each group in a thread of its own with its output in a log; prints each log whole,
        in the order the groups end. True when every group succeeded."""
        done: list[tuple[str, bool, Path]] = []
        cond = threading.Condition()
        folder = self.logs or Path(tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)

        def name_of(group: Callable[[], bool]) -> str:
            return str(
                getattr(group, "__name__", None) or getattr(getattr(group, "func", None), "__name__", "group")
            )

        def run(group: Callable[[], bool]) -> None:
            path = folder / f"group-{name_of(group)}.log"
            ok = False
            with path.open("w") as out:
                self._local.out = out
                try:
                    ok = bool(group())
                except Exception as exc:
                    out.write(f"\n{name_of(group)}: {type(exc).__name__}: {exc}\n")
                    with self._lock:
                        self.results.append(
                            Result(name_of(group), 0, False, 1, None, [f"{type(exc).__name__}: {exc}"])
                        )
            with cond:
                done.append((name_of(group), ok, path))
                cond.notify()

        threads = [threading.Thread(target=run, args=(g,), name=name_of(g), daemon=True) for g in groups]
        for g, t in zip(groups, threads, strict=True):
            t.start()
            self.say(f"--- started: {name_of(g)} (its output follows when it ends)")
        ok_all, printed = True, 0
        while printed < len(groups):
            with cond:
                while len(done) == printed:
                    cond.wait()
                name, ok, path = done[printed]
            printed += 1
            ok_all = ok_all and ok
            self.say()
            self.say(f"=============== {name} (finished) ===============")
            self.out.write(path.read_text(errors="replace"))
            self.out.flush()
        for t in threads:
            t.join()
        return ok_all

    # -- the end ----------------------------------------------------------------------------------
    def summary(self) -> bool:
        failed = [r for r in self.results if not r.ok]
        if failed:
            self.say()
            self.say("=== failed stages, again")
            for r in failed:
                self.say(f"--- {r.name}: {r.result}; its report:")
                for line in r.report:
                    self.say(line)
        self.say()
        self.say("=== summary")
        for r in self.results:
            self.say(f"  {r.name:<42} {r.result:<16} {r.seconds:>5}s")
        self.say(f"stages: {len(self.results) - len(failed)} passed, {len(failed)} failed")
        return not failed

    def timings(self, since: int = 0) -> list[dict[str, Any]]:
        return [r.as_json() for r in self.results[since:]]

    def stop_children(self) -> None:
        """Ends every command still running (Ctrl-C): each runs in a session of its own."""
        with self._lock:
            children = list(self._children)
        for proc in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)


@contextlib.contextmanager
def interruptible(runner: Runner) -> Iterator[None]:
    """Ctrl-C (or SIGTERM from CI's timeout) ends the commands the runner started, then exits 130."""

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except KeyboardInterrupt:
        runner.stop_children()
        print("\ninterrupted: the running stages were stopped", file=sys.stderr)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)


def quoted(cmd: Sequence[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)
