"""A role's variable where that role is not running: the value the host has (inventory, extra
vars, play vars), else the role's own default from its defaults/main.yml. Playbooks and other
roles wire roles together with it (sidecar_stack's device is hailort's), so no default is written
a second time next to a `| default(...)`. tests/unit/test_role_var.py runs it through ansible."""

from __future__ import annotations

DOCUMENTATION = """
name: role_var
short_description: A role's variable as the host has it, else the role's own default
description:
  - For each variable name, the host's value when it has one, else the default in the
    defaults/main.yml of the collection's role whose name prefixes it (the longest, so
    hailort_mirror_port is hailort_mirror's).
  - Only literal defaults are read this way; a templated one fails, naming the variable.
options:
  _terms:
    description: Variable names, each with a role's prefix (e.g. hailort_group).
    required: true
    type: list
    elements: str
"""

EXAMPLES = """
- name: The device sidecar_stack is given, hailort's
  ansible.builtin.debug:
    msg: "{{ lookup('synchrony.hailo_pipeline.role_var', 'hailort_device') }}"
"""

RETURN = """
_raw:
  description: One value per name.
  type: list
"""

import functools
from pathlib import Path
from typing import Any

import yaml
from ansible.errors import AnsibleError
from ansible.plugins.loader import lookup_loader
from ansible.plugins.lookup import LookupBase

# This file is plugins/lookup/role_var.py in the collection.
ROLES = Path(__file__).resolve().parents[2] / "roles"


@functools.cache
def _defaults(role: str, roles: Path = ROLES) -> dict[str, Any]:
    path = roles / role / "defaults" / "main.yml"
    loaded = yaml.safe_load(path.read_text()) if path.is_file() else None
    return loaded if isinstance(loaded, dict) else {}


def role_default(name: str, roles: Path = ROLES) -> Any:
    """The default of `name` in the defaults of the role its name starts with."""
    owners = sorted((p.name for p in roles.iterdir() if name.startswith(p.name + "_")), key=len)
    if not owners:
        raise AnsibleError(f"role_var: {name} starts with no role's name in this collection")
    defaults = _defaults(owners[-1], roles)
    if name not in defaults:
        raise AnsibleError(f"role_var: {name} has no default in roles/{owners[-1]}/defaults/main.yml")
    value = defaults[name]
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        raise AnsibleError(f"role_var: {name}'s default is a template; set {name} instead")
    return value


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any) -> list[Any]:
        # The builtin vars lookup templates the host's value the way this ansible-core does.
        # The host's value first: a role's default is read only for a host without one, so a
        # templated default refuses only the hosts that leave the variable unset.
        vars_lookup = lookup_loader.get("ansible.builtin.vars", loader=self._loader, templar=self._templar)
        variables = variables or {}
        return [vars_lookup.run([t], variables)[0] if t in variables else role_default(t) for t in terms]
