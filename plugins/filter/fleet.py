"""Filters for pull mode's credentials (roles fleet_repo and pull_agent), so no role computes them in
Jinja and unit tests reach them (tests/unit/test_fleet_filters.py): each Pi's report credential,
derived from the fleet's one reports secret (a Pi gets only its own; GPUSrv only their salted
hashes), the reports server's user file, and URLs with their credentials taken out for messages."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _mac(secret: str, purpose: str, host: str) -> bytes:
    if len(secret) < 16:
        raise ValueError("the reports secret must be at least 16 characters")
    if not _HOST.fullmatch(host):
        raise ValueError(f"{host!r} is not a host name (letters, digits, '.', '_', '-')")
    return hmac.new(secret.encode(), f"hailo-pipeline {purpose} {host}".encode(), hashlib.sha256).digest()


def report_password(secret: str, host: str) -> str:
    """HOST's password for the fleet's reports: 256 bits from the secret, HOST's alone."""
    return base64.urlsafe_b64encode(_mac(secret, "report", host)).decode().rstrip("=")


def reporters_htpasswd(secret: str, hosts: Iterable[str]) -> str:
    """nginx's auth_basic_user_file for HOSTS: one line each, the password as {SSHA} (RFC 2307,
    nginx's ngx_http_auth_basic_module), salted per host and the same every run (idempotent)."""
    lines = []
    for host in sorted(set(hosts)):
        salt = _mac(secret, "report-salt", host)[:8]
        digest = hashlib.sha1(report_password(secret, host).encode() + salt).digest()  # noqa: S324 - RFC 2307 SSHA, of 256-bit random passwords
        lines.append(f"{host}:{{SSHA}}{base64.b64encode(digest + salt).decode()}")
    return "".join(line + "\n" for line in lines)


def url_redact(url: str) -> str:
    """URL without the user and password it may carry (for messages)."""
    parts = urlsplit(str(url))
    if parts.username is None and parts.password is None:
        return str(url)
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "report_password": report_password,
            "reporters_htpasswd": reporters_htpasswd,
            "url_redact": url_redact,
        }
