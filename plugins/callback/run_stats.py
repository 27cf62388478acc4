"""A notification callback that writes a playbook run's per-host stats as one JSON file, so a
program that runs ansible-playbook reads them instead of the PLAY RECAP's text (which changes with
ansible-core's releases). The pull agent (roles/pull_agent/files/hailo-pull.py) enables it.
ansible-core has no such callback of its own (its json callback went to ansible.posix, which a Pi's
ansible-core does not carry)."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: run_stats
type: notification
short_description: Writes the run's per-host stats (ok, changed, failures, ...) as a JSON file
description:
  - >-
    At the end of a playbook run, writes C({"hosts": {HOST: {"ok": N, "changed": N, "failures": N,
    "unreachable": N, "skipped": N, "rescued": N, "ignored": N}}}) to O(path), replacing the file
    atomically. Nothing is written when O(path) is not set.
requirements:
  - enabled in callbacks_enabled (ANSIBLE_CALLBACKS_ENABLED=synchrony.hailo_pipeline.run_stats)
options:
  path:
    description: The file the stats are written to.
    type: path
    env:
      - name: HAILO_RUN_STATS_FILE
    ini:
      - section: callback_run_stats
        key: path
"""

COUNTS = ("ok", "changed", "failures", "unreachable", "skipped", "rescued", "ignored")


def stats_document(stats: Any) -> dict[str, Any]:
    """The per-host counts of an AggregateStats (ansible.executor.stats)."""
    hosts = sorted(stats.processed)
    return {"hosts": {h: {k: int(stats.summarize(h).get(k, 0)) for k in COUNTS} for h in hosts}}


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "synchrony.hailo_pipeline.run_stats"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_stats(self, stats: Any) -> None:
        path = self.get_option("path")
        if not path:
            return
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".run-stats.", dir=folder)
        with os.fdopen(fd, "w") as f:
            json.dump(stats_document(stats), f, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
