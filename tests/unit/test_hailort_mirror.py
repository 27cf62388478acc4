"""roles/hailort_mirror/files/hailort_mirror.py against the lab's stand-in Raspberry Pi archive
(lab/standins/hailort_apt.py, a signed apt repository read over file://). That apt installs from
the mirror is the lab's part (tests/lab/converged/test_pi.py, lab-pi-trixie)."""

from __future__ import annotations

import gzip
import json
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import hailort_apt
import pytest

MIRROR = Path(__file__).resolve().parents[2] / "roles" / "hailort_mirror" / "files" / "hailort_mirror.py"
SET_NEW = "hailort=4.23.0-1,hailo-dkms=4.23.0-1,python3-hailort=4.23.0-1,hailofw=4.23.0-1"
SET_OLD = "hailort=4.22.0-1,hailofw=4.22.0-1"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("upstream") / "apt"
    hailort_apt.build_repo(repo)
    return repo


@pytest.fixture
def mirror(tmp_path: Path, upstream: Path) -> dict[str, Any]:
    copy = tmp_path / "upstream"
    shutil.copytree(upstream, copy)
    root, state = tmp_path / "srv", tmp_path / "state"

    def run(cmd: str, *extra: str, sets: tuple[str, ...] = (SET_NEW, SET_OLD), check: bool = False) -> Any:
        args = [sys.executable, str(MIRROR), cmd, "--root", str(root), "--state", str(state), *extra]
        if cmd == "sync":
            args += ["--upstream", copy.as_uri(), "--keyring", str(copy / "archive-key.asc"),
                     "--suite", "trixie", "--suite", "bookworm",
                     "--arch", "arm64", "--arch", "amd64"]  # fmt: skip
            for s in sets:
                args += ["--set", s]
        if check:
            args.append("--check")
        proc = subprocess.run(args, capture_output=True, text=True)
        return proc.returncode, (json.loads(proc.stdout) if proc.returncode == 0 else proc.stderr)

    assert run("key")[0] == 0
    return {"run": run, "root": root, "state": state, "upstream": copy}


def packages(root: Path, suite: str, arch: str) -> list[tuple[str, str]]:
    text = gzip.decompress((root / f"dists/{suite}/main/binary-{arch}/Packages.gz").read_bytes()).decode()
    stanzas = [
        dict(ln.split(": ", 1) for ln in s.splitlines() if ": " in ln) for s in text.split("\n\n") if s
    ]
    for s in stanzas:
        assert (root / s["Filename"]).is_file(), s["Filename"]
    return sorted((s["Package"], s["Version"]) for s in stanzas)


def test_sync_keeps_the_sets_and_serves_a_signed_index(mirror: dict[str, Any]) -> None:
    rc, out = mirror["run"]("sync")
    assert rc == 0, out
    assert out["changed"] is True and len(out["fetched"]) == 2 * 2 * 6
    root = mirror["root"]
    assert packages(root, "trixie", "arm64") == sorted(
        [("hailo-dkms", "4.23.0-1"), ("hailofw", "4.22.0-1"), ("hailofw", "4.23.0-1"),
         ("hailort", "4.22.0-1"), ("hailort", "4.23.0-1"), ("python3-hailort", "4.23.0-1")]
    )  # fmt: skip
    # apt's own check: the InRelease verifies with the key the Pis get (hailort-mirror.asc).
    ring = root.parent / "ring.gpg"
    key = root / "hailort-mirror.asc"
    subprocess.run(["gpg", "--batch", "--yes", "--dearmor", "-o", str(ring), str(key)], check=True)
    subprocess.run(["gpgv", "--keyring", str(ring), str(root / "dists/trixie/InRelease")],
                   check=True, capture_output=True)  # fmt: skip
    assert "linux-image-rpi-2712" not in (root / "dists/trixie/main/binary-arm64/Packages").read_text()


def test_a_second_sync_changes_nothing_even_without_the_archive(mirror: dict[str, Any]) -> None:
    assert mirror["run"]("sync")[0] == 0
    before = {p: p.read_bytes() for p in mirror["root"].rglob("*") if p.is_file()}
    shutil.rmtree(mirror["upstream"] / "pool")  # the archive moved on: the pinned files are gone
    rc, out = mirror["run"]("sync")
    assert (rc, out["changed"], out["fetched"]) == (0, False, [])
    assert {p: p.read_bytes() for p in mirror["root"].rglob("*") if p.is_file()} == before


def test_check_mode_says_what_it_would_fetch_and_writes_nothing(mirror: dict[str, Any]) -> None:
    rc, out = mirror["run"]("sync", check=True)
    assert rc == 0 and out["changed"] is True and "trixie/arm64/hailort/4.23.0-1" in out["would_fetch"]
    assert not (mirror["root"] / "pool").exists() and not (mirror["root"] / "dists").exists()


def test_a_set_the_archive_lacks_is_refused_by_name(mirror: dict[str, Any]) -> None:
    rc, err = mirror["run"]("sync", sets=("hailort=4.99.0-1",))
    assert rc == 2
    assert "hailort=4.99.0-1 is not in" in err and "the archive has: 4.22.0-1, 4.23.0-1" in err
    assert not (mirror["root"] / "dists").exists()


def test_a_tampered_archive_is_refused(mirror: dict[str, Any]) -> None:
    (deb,) = (mirror["upstream"] / "pool").glob("hailofw_4.22.0-1_*.deb")
    deb.write_bytes(deb.read_bytes() + b"x")
    rc, err = mirror["run"]("sync", sets=(SET_OLD,))
    assert rc == 2 and "does not match the archive's index (SHA256)" in err


def test_an_index_signed_by_another_key_is_refused(mirror: dict[str, Any], tmp_path: Path) -> None:
    other = tmp_path / "other"
    hailort_apt.build_repo(other, ("4.23.0",))  # a fresh key signs this one
    shutil.copy(other / "archive-key.asc", mirror["upstream"] / "archive-key.asc")
    rc, err = mirror["run"]("sync")
    assert rc == 2 and "InRelease is not signed by the given key" in err


def test_the_key_is_made_once(mirror: dict[str, Any]) -> None:
    first = (mirror["root"] / "hailort-mirror.asc").read_text()
    rc, out = mirror["run"]("key")
    assert rc == 0 and out["changed"] is False and len(out["fingerprint"]) == 40
    assert (mirror["root"] / "hailort-mirror.asc").read_text() == first


def test_sets_as_json_are_the_sets_as_arguments(mirror: dict[str, Any], tmp_path: Path) -> None:
    """The role passes --sets-json; a person types --set: both keep and index the same."""
    assert mirror["run"]("sync", sets=(SET_NEW,))[0] == 0
    by_args = packages(mirror["root"], "bookworm", "amd64")
    sets = json.dumps([dict(p.split("=") for p in SET_NEW.split(","))])
    rc, out = mirror["run"]("sync", "--sets-json", sets, sets=())
    assert (rc, out["changed"]) == (0, False)
    assert packages(mirror["root"], "bookworm", "amd64") == by_args
    rc, err = mirror["run"]("sync", "--sets-json", '[{"hailort": ""}, 3]', sets=())
    assert rc == 2 and "--sets-json" in err


def test_no_gpg_agent_outlives_a_run(mirror: dict[str, Any]) -> None:
    # gpg starts an agent for the key's home when it signs; a timer's sync must not leave one.
    assert mirror["run"]("sync")[0] == 0
    home = mirror["state"] / "gnupg"
    path = subprocess.run(["gpgconf", "--homedir", str(home), "--list-dirs", "agent-socket"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    with socket.socket(socket.AF_UNIX) as agent, pytest.raises(OSError):
        agent.connect(path)


def test_the_standin_archive_keeps_no_signing_key_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its gpg home (the archive's private key) is removed once the archive is signed.
    homes: list[str] = []
    mkdtemp = tempfile.mkdtemp

    def recorded(*args: Any, **kwargs: Any) -> str:
        homes.append(mkdtemp(*args, **kwargs))
        return homes[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", recorded)
    key = hailort_apt.build_repo(tmp_path / "apt", ("4.23.0",))
    assert key.read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert homes and [h for h in homes if Path(h).exists()] == []
