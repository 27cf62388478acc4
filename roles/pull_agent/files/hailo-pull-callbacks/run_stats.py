"""A run's per-host counts as JSON, for a program that starts ansible-playbook and needs its outcome
without reading the PLAY RECAP text (which changes with ansible-core's releases; its json callback
went to ansible.posix, which a Pi's ansible-core does not carry). Shipped with the pull agent, not as
a collection plugin: the pull_agent role installs it to /usr/local/libexec/hailo-pull-callbacks/
beside the agent, which runs the fleet's playbook with ANSIBLE_CALLBACK_PLUGINS set there, so the
writer and the agent's reader are always the same version whatever tag a run checks out. The lab
links this file as synchrony.hailo_lab.run_stats (lab/plugins/callback/run_stats.py) for its
programs (lab/scripts/stages.py, tests/lab/labplay.py, lab/scripts/scale.py)."""

from __future__ import annotations

import json
import os
import tempfile

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: run_stats
type: aggregate
short_description: Writes the play recap's per-host counts to a JSON file
description:
  - At the end of a playbook run, writes one JSON object to the file named by O(path), with the same
    per-host counts as the PLAY RECAP lines, so that a program can read the outcome of a run without
    parsing its text output.
  - >-
    The object is C({"hosts": {HOST: {"ok": N, "changed": N, "failures": N, "unreachable": N,
    "skipped": N, "rescued": N, "ignored": N}}, "module_runs": {HOST: {ROLE: N}}}).
  - >-
    C(module_runs) counts, per host and role (C(play) outside any role), the task results that ran
    a module on a host (each loop item one; delegated ones too): the cost a run pays per host
    and task. Skipped tasks and actions that run on the controller alone (set_fact, debug, assert,
    fail, meta, include_vars, add_host, group_by, includes) are not counted.
  - The file is written to a temporary file beside it and renamed, so a reader never sees half of it.
  - Writes nothing when O(path) is not set.
requirements:
  - >-
    enable it in the callbacks_enabled setting (C(ANSIBLE_CALLBACKS_ENABLED=run_stats) with
    C(ANSIBLE_CALLBACK_PLUGINS) naming its folder, or C(synchrony.hailo_lab.run_stats) in the lab)
options:
  path:
    description: The JSON file to write.
    type: path
    env:
      - name: HAILO_RUN_STATS
    ini:
      - section: callback_run_stats
        key: path
"""

EXAMPLES = """
# HAILO_RUN_STATS=/tmp/stats.json ANSIBLE_CALLBACKS_ENABLED=run_stats \\
#   ANSIBLE_CALLBACK_PLUGINS=/usr/local/libexec/hailo-pull-callbacks \\
#   ansible-playbook playbooks/pi.yml -i hosts.yml
# python3 -c 'import json; print(json.load(open("/tmp/stats.json"))["hosts"])'
"""

COUNTS = ("ok", "changed", "failures", "unreachable", "skipped", "rescued", "ignored")
# Actions that never start a module on a host.
_LOCAL = ("set_fact", "debug", "assert", "fail", "meta", "include_vars", "add_host", "group_by")
_INCLUDES = ("include_tasks", "include_role", "import_tasks", "import_role")
CONTROLLER_ONLY = frozenset(
    f"{prefix}{name}" for prefix in ("", "ansible.builtin.", "ansible.legacy.") for name in _LOCAL + _INCLUDES
)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "run_stats"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._module_runs = {}

    def _count(self, result, items=1):
        task = result._task
        if task.action in CONTROLLER_ONLY:
            return
        role = task._role.get_name(include_role_fqcn=False) if task._role else "play"
        per_host = self._module_runs.setdefault(result._host.get_name(), {})
        per_host[role] = per_host.get(role, 0) + items

    def _on_result(self, result):
        # A loop's result arrives once more, whole, after its items: counted by its items.
        if not (result._task.loop or result._task.loop_with):
            self._count(result)

    def v2_runner_on_ok(self, result):
        self._on_result(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._on_result(result)

    def v2_runner_item_on_ok(self, result):
        self._count(result)

    def v2_runner_item_on_failed(self, result):
        self._count(result)

    def v2_playbook_on_stats(self, stats):
        path = self.get_option("path")
        if not path:
            return
        hosts = {}
        for host in sorted(stats.processed):
            summary = stats.summarize(host)
            hosts[host] = {key: int(summary.get(key, 0)) for key in COUNTS}
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".run_stats.", dir=folder)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump({"hosts": hosts, "module_runs": self._module_runs}, out, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
