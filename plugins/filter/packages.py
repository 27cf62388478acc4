"""Package state from one `dpkg-query` per role instead of apt's or package_facts' whole cache (each
costs seconds per host even when everything is in place; docs/scale.md): the roles call
ansible.builtin.apt only for packages that are missing, and hold only what is not held yet.
Input is the output of
    dpkg-query --show --showformat='${db:Status-Abbrev} ${Package} ${Version}\\n' NAME...
A name dpkg does not know (a virtual package, a typo) counts as missing, so apt decides.
Each filter's documentation (ansible-doc -t filter): plugins/filter/<name>.yml.
Unit tests: tests/unit/test_packages.py."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable


def _rows(stdout: str | None) -> list[tuple[str, str, str]]:
    """(status, name, version) per line; status is db:Status-Abbrev: the wanted selection (i
    install, h hold, ...), the current state (i installed, n not, ...), the error flag."""
    rows = []
    for line in (stdout or "").splitlines():
        fields = line.split()
        if len(fields) >= 2 and len(fields[0]) >= 2:
            rows.append((fields[0], fields[1].split(":", 1)[0], fields[2] if len(fields) > 2 else ""))
    return rows


def _installed(stdout: str | None) -> dict[str, tuple[str, str]]:
    """Fully installed packages (state i, no error flag): name -> (selection, version)."""
    return {name: (st[0], ver) for st, name, ver in _rows(stdout) if st[1] == "i" and len(st) == 2}


def dpkg_missing(stdout: str | None, wanted: Iterable[str]) -> list[str]:
    """NAME=VERSION (apt's form; VERSION may end in *) also counts as missing when another version
    is installed: apt would install that one."""
    have = _installed(stdout)
    missing = []
    for item in wanted:
        name, _sep, version = str(item).partition("=")
        if name not in have or (version and not fnmatch.fnmatchcase(have[name][1], version)):
            missing.append(item)
    return missing


def dpkg_unheld(stdout: str | None, wanted: Iterable[str]) -> list[str]:
    have = _installed(stdout)
    return [name for name in wanted if name in have and have[name][0] != "h"]


def dpkg_versions(stdout: str | None) -> dict[str, str]:
    return {name: ver for name, (_held, ver) in _installed(stdout).items()}


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"dpkg_missing": dpkg_missing, "dpkg_unheld": dpkg_unheld, "dpkg_versions": dpkg_versions}
