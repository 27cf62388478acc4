"""The two places on the controller the roles use, each decided here once:

- sources: where the images' sources are read from (sidecar_image, hef_compile): the variable
  hailo_pipeline_source_dir, or this collection's own root, which ships them (galaxy.yml);
- output: where what the roles bring back to the controller is written (releases, the image's
  record, the allowed_signers line, the mirror's key, acceptance reports): the variable
  hailo_pipeline_output_dir, or build/ in the folder ansible-playbook runs from; never inside the
  installed collection (or an execution environment's image, where it would be lost).

tests/unit/test_controller_path.py runs it through ansible."""

from __future__ import annotations

DOCUMENTATION = """
name: controller_path
short_description: Where the roles read the images' sources and write their outputs on the controller
description:
  - C(sources) is the variable C(hailo_pipeline_source_dir) when set, else the root of this
    collection, which ships the sources the images are built from (sidecar_app/, hef_compiler/, images/).
  - C(output) is the variable C(hailo_pipeline_output_dir) when set, else C(build) in the folder
    ansible-playbook runs from. A relative value is taken from that folder too. The roles' own output paths
    (hef_compile_fetch_dir, sidecar_image_record_path, ...) default to files and folders under it.
  - A value that is not a string fails, naming the variable.
options:
  _terms:
    description: C(sources) or C(output).
    required: true
    type: list
    elements: str
"""

EXAMPLES = """
- name: Where releases land on the controller
  ansible.builtin.debug:
    msg: "{{ lookup('synchrony.hailo_pipeline.controller_path', 'output') }}/artifacts"
"""

RETURN = """
_raw:
  description: One absolute path per term.
  type: list
  elements: str
"""

import os
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleError
from ansible.plugins.loader import lookup_loader
from ansible.plugins.lookup import LookupBase

# This file is plugins/lookup/controller_path.py in the collection.
COLLECTION_ROOT = Path(__file__).resolve().parents[2]
VARIABLES = {"sources": "hailo_pipeline_source_dir", "output": "hailo_pipeline_output_dir"}


def resolve(kind: str, value: Any, cwd: str, root: Path = COLLECTION_ROOT) -> str:
    """The path for `kind` given its variable's value (None or "" when unset)."""
    if kind not in VARIABLES:
        raise AnsibleError(f"controller_path: unknown term {kind!r} (one of: {', '.join(VARIABLES)})")
    name = VARIABLES[kind]
    if value is not None and not isinstance(value, str):
        raise AnsibleError(f"{name} must be a path (a string), got {value!r}")
    if value:
        return os.path.normpath(os.path.join(cwd, os.path.expanduser(value)))
    return str(root) if kind == "sources" else os.path.join(cwd, "build")


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any) -> list[str]:
        # The builtin vars lookup templates the value the way this ansible-core version does.
        values = lookup_loader.get("ansible.builtin.vars", loader=self._loader, templar=self._templar)
        out = []
        for term in terms:
            name = VARIABLES.get(term, "")
            value = values.run([name], variables or {}, default="")[0] if name else None
            out.append(resolve(term, value, os.getcwd()))
        return out
