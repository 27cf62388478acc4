"""The pull agent (pull_agent role): a Pi behind NAT applies the fleet's signed releases itself.

Run by hailo-pull.timer (randomised delay); one run:
  1. fetches the fleet repository (the collection and the site's inventory) from the remote;
  2. takes the newest tag matching the pattern (version order); nothing new: done ("current");
  3. refuses a tag older than the one last applied ("refused"), or one that is not an annotated tag
     signed by a key in the allowed signers (git's SSH signatures: gpg.format=ssh,
     gpg.ssh.allowedSignersFile), with the reason;
  4. waits for its wave: wave N applies a tag DELAYS[N] minutes after the tag was made ("waiting"),
     and a wave after the first applies it only once a canary (wave 0) reported it deployed and
     none reported it failed ("held": a failed canary holds every later wave);
  5. checks the tag out and runs the playbook against this host (ansible-playbook, connection
     local), with the repository's own collections;
  6. records the outcome (time, tag, commit, result, changed count) in the rollout file the node
     exporter's hailo collector reads, and sends it to the fleet's reports (HTTP PUT
     REPORTS/TAG/HOST.json), where later waves and people read it.
Exit 0 whatever the outcome (the timer runs again); 2 on a bad configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def version_key(tag: str) -> list[Any]:
    """Orders tags as `git tag --sort=v:refname` does for fleet-1.2.10 > fleet-1.2.9."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", tag)]


def fetch(url: str, repo: Path) -> None:
    if not (repo / ".git").exists():
        repo.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "--quiet", "--no-checkout", url, str(repo)], check=True,
                       capture_output=True, text=True)  # fmt: skip
    git(repo, "fetch", "--quiet", "--tags", "--force", "--prune", "--prune-tags", "origin")


def newest(repo: Path, pattern: str) -> str | None:
    tags = git(repo, "tag", "--list", pattern).stdout.split()
    return max(tags, key=version_key) if tags else None


def verify(repo: Path, tag: str, allowed_signers: Path) -> tuple[bool, str]:
    if git(repo, "cat-file", "-t", f"refs/tags/{tag}").stdout.strip() != "tag":
        return False, f"{tag} is a lightweight tag: only annotated, signed tags are applied"
    proc = git(repo, "-c", "gpg.format=ssh", "-c", f"gpg.ssh.allowedSignersFile={allowed_signers}",
               "verify-tag", tag, check=False)  # fmt: skip
    text = (proc.stderr + proc.stdout).strip()
    if proc.returncode != 0:
        return (
            False,
            f"{tag} is not signed by an allowed key: {text.splitlines()[-1] if text else 'no signature'}",
        )
    return True, text.splitlines()[0] if text else "good signature"


def tagged_at(repo: Path, tag: str) -> int:
    out = git(repo, "for-each-ref", f"refs/tags/{tag}", "--format=%(taggerdate:unix)").stdout.strip()
    return int(out) if out else 0


def reports_of(url: str, tag: str) -> list[dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/{tag}/", timeout=20) as r:  # noqa: S310 - the fleet's URL
            listing = json.load(r)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise
    out = []
    for entry in listing:
        if entry.get("type") == "file" and entry.get("name", "").endswith(".json"):
            with urllib.request.urlopen(f"{url.rstrip('/')}/{tag}/{entry['name']}", timeout=20) as r:  # noqa: S310
                out.append(json.load(r))
    return out


def hold_reason(reports: list[dict[str, Any]]) -> str | None:
    """Why a later wave must wait for this tag, or None when a canary has it and none failed."""
    canaries = [r for r in reports if int(r.get("wave", -1)) == 0]
    failed = [r["host"] for r in canaries if r.get("result") in ("failed", "rolled_back")]
    if failed:
        return f"the canary {', '.join(sorted(failed))} failed this tag"
    if not any(r.get("result") in ("deployed", "unchanged") for r in canaries):
        return "no canary has applied this tag yet"
    return None


def send_report(url: str, tag: str, host: str, report: dict[str, Any]) -> str | None:
    data = json.dumps(report).encode()
    req = urllib.request.Request(  # noqa: S310 - main() allows http(s) URLs only
        f"{url.rstrip('/')}/{tag}/{host}.json",
        data=data,
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(req, timeout=20).close()  # noqa: S310
    except OSError as exc:
        return str(exc)
    return None


def apply(a: argparse.Namespace, repo: Path, tag: str) -> tuple[str, int, str]:
    """Checks TAG out and runs the playbook on this host: (result, changed, last lines)."""
    git(repo, "checkout", "--quiet", "--force", "--detach", f"refs/tags/{tag}")
    collections = Path(a.state_dir) / "collections"
    link = collections / "ansible_collections" / "synchrony" / "hailo_pipeline"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(repo)
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": f"{collections}:{repo / 'collections'}",
           "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_CONFIG": str(repo / "ansible.cfg")}  # fmt: skip
    # This host only (its name in the site's inventory), over a local connection whatever the
    # inventory says of it: the same inventory serves push runs.
    cmd = [a.ansible_playbook, "-i", str(repo / a.inventory), str(repo / a.playbook), "--limit", a.host,
           "-e", "ansible_connection=local"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=repo, check=False)
    recap = {m.group(1): (int(m.group(3)), int(m.group(5))) for m in RECAP.finditer(proc.stdout)}
    changed, failed = recap.get(a.host, (0, 1 if proc.returncode else 0))
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    if proc.returncode != 0 or failed:
        return "failed", changed, tail
    return ("deployed" if changed else "unchanged"), changed, tail


def run(a: argparse.Namespace) -> dict[str, Any]:
    state_dir = Path(a.state_dir)
    repo, state_file = state_dir / "repo", state_dir / "state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    fetch(a.repo_url, repo)
    tag = newest(repo, a.tag_pattern)
    out: dict[str, Any] = {
        "host": a.host,
        "wave": a.wave,
        "at": now(),
        "tag": tag,
        "commit": None,
        "changed": 0,
    }
    if tag is None:
        return {**out, "result": "current", "reason": f"no tag matches {a.tag_pattern}"}
    out["commit"] = git(repo, "rev-list", "-n", "1", f"refs/tags/{tag}").stdout.strip()
    applied = state.get("tag")
    if applied == tag and state.get("commit") == out["commit"]:
        return {**out, "result": "current", "reason": f"{tag} is applied"}
    if applied and version_key(tag) < version_key(applied):
        return {
            **out,
            "result": "refused",
            "reason": f"{tag} is older than {applied}, applied before: no rollback by pull",
        }
    good, why = verify(repo, tag, Path(a.allowed_signers))
    if not good:
        return {**out, "result": "refused", "reason": why}
    opens = tagged_at(repo, tag) + 60 * a.delays[min(a.wave, len(a.delays) - 1)]
    if time.time() < opens:
        return {
            **out,
            "result": "waiting",
            "reason": f"wave {a.wave} opens at {time.strftime('%H:%M:%SZ', time.gmtime(opens))}",
        }
    if a.wave > 0:
        reason = hold_reason(reports_of(a.reports_url, tag))
        if reason:
            return {**out, "result": "held", "reason": reason}
    result, changed, tail = apply(a, repo, tag)
    if result != "failed":
        state_file.write_text(json.dumps({"tag": tag, "commit": out["commit"], "at": out["at"]}) + "\n")
    return {**out, "result": result, "changed": changed, "reason": why, "output": tail}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo-url", required=True)
    ap.add_argument("--reports-url", required=True)
    ap.add_argument("--allowed-signers", required=True)
    ap.add_argument("--tag-pattern", default="fleet-*")
    ap.add_argument("--wave", type=int, default=0)
    ap.add_argument("--delays", default="0", help="minutes after the tag each wave opens, comma-separated")
    ap.add_argument("--state-dir", default="/var/lib/hailo-pull")
    ap.add_argument("--rollout-file", default="/var/lib/hailo-pipeline/rollout.json")
    ap.add_argument("--inventory", default="site/hosts.yml")
    ap.add_argument("--playbook", default="playbooks/pi.yml")
    ap.add_argument("--ansible-playbook", default="ansible-playbook")
    ap.add_argument("--host", default=socket.gethostname(), help="this host's name in the site's inventory")
    a = ap.parse_args(argv)
    if not re.match(r"https?://", a.reports_url):
        print(f"hailo-pull: --reports-url {a.reports_url!r}: an http:// or https:// URL", file=sys.stderr)
        return 2
    try:
        a.delays = [int(d) for d in a.delays.split(",")]
    except ValueError:
        print(f"hailo-pull: --delays {a.delays!r}: minutes, comma-separated", file=sys.stderr)
        return 2
    try:
        outcome = run(a)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        outcome = {"host": a.host, "wave": a.wave, "result": "failed", "reason": str(exc), "changed": 0,
                   "at": now(), "tag": None, "commit": None}  # fmt: skip
    rollout = Path(a.rollout_file)
    rollout.parent.mkdir(parents=True, exist_ok=True)
    tmp = rollout.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: v for k, v in outcome.items() if k != "output"}, indent=2) + "\n")
    tmp.replace(rollout)
    if outcome.get("tag") and outcome["result"] in ("deployed", "unchanged", "failed", "refused"):
        error = send_report(
            a.reports_url, outcome["tag"], a.host, {k: v for k, v in outcome.items() if k != "output"}
        )
        if error:
            outcome["report_error"] = error
    print(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
