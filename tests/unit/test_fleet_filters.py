"""plugins/filter/fleet.py: each Pi's report credential from the fleet's reports secret (its own,
no other host's), nginx's user file of salted hashes that accepts exactly those credentials
(checked as nginx checks {SSHA}: sha1(password + salt) == digest, RFC 2307), and URLs without
their credentials for messages."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import pytest

_spec = importlib.util.spec_from_file_location(
    "fleet", Path(__file__).resolve().parents[2] / "plugins" / "filter" / "fleet.py"
)
assert _spec and _spec.loader
fleet: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fleet)
SECRET = "a-fleet-secret-of-32-characters!"


def ssha_accepts(line: str, user: str, password: str) -> bool:
    name, _, stored = line.partition(":")
    raw = base64.b64decode(stored.removeprefix("{SSHA}"))
    digest, salt = raw[:20], raw[20:]
    return name == user and hashlib.sha1(password.encode() + salt).digest() == digest


def test_each_host_gets_a_password_of_its_own() -> None:
    one, two = fleet.report_password(SECRET, "pi-1"), fleet.report_password(SECRET, "pi-2")
    assert one == fleet.report_password(SECRET, "pi-1") and one != two and len(one) == 43
    assert one != fleet.report_password(SECRET + "x", "pi-1"), "another fleet, another credential"


def test_the_user_file_accepts_each_host_with_its_own_password_only() -> None:
    text = fleet.reporters_htpasswd(SECRET, ["pi-2", "pi-1", "pi-2"])
    assert text == fleet.reporters_htpasswd(SECRET, ["pi-1", "pi-2"]), "the same every run (idempotent)"
    lines = text.splitlines()
    assert [line.split(":")[0] for line in lines] == ["pi-1", "pi-2"] and SECRET not in text
    assert ssha_accepts(lines[0], "pi-1", fleet.report_password(SECRET, "pi-1"))
    assert not ssha_accepts(lines[0], "pi-1", fleet.report_password(SECRET, "pi-2"))
    assert fleet.report_password(SECRET, "pi-1") not in text


@pytest.mark.parametrize(("secret", "host"), [("short", "pi-1"), (SECRET, "pi 1"), (SECRET, "pi-1:x")])
def test_a_short_secret_or_a_bad_host_name_is_refused(secret: str, host: str) -> None:
    with pytest.raises(ValueError, match=r"at least 16|not a host name"):
        fleet.report_password(secret, host)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://fleet:s3cret@gpusrv:8082/fleet.git", "https://***@gpusrv:8082/fleet.git"),
        ("http://gpusrv:8082/reports", "http://gpusrv:8082/reports"),
        ("ssh://git@gpusrv/srv/fleet.git", "ssh://***@gpusrv/srv/fleet.git"),
    ],
)
def test_urls_are_shown_without_their_credentials(url: str, shown: str) -> None:
    assert fleet.url_redact(url) == shown
