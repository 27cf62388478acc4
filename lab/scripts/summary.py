"""The lab's summary after `make lab`, and its registry clean-up for `make lab-down`.

summary.py [--timings FILE] [--out FILE]
    prints what the lab runs: hosts and their sidecars (health read over the published port on
    127.0.0.1), the image GPUSrv pushed with its digest, the release it compiled with its
    checksums, what each Pi serves, and a curl line that calls /infer. Writes the same as JSON
    (default build/lab/summary.json). Exits 1 when a sidecar is not healthy or a Pi does not
    serve the release's model and config version. collect() reads; problems() and render() only
    compute (tests/unit/test_lab_summary.py).
summary.py --delete-tags
    deletes every tag of the repository the lab's GPUSrv pushed to (its record names it).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "build" / "lab"
INVENTORY = ROOT / "lab" / "inventory" / "hosts.yml"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def inventory() -> dict[str, Any]:
    out = subprocess.run(
        ["ansible-inventory", "-i", str(INVENTORY), "--list"], check=True, capture_output=True, text=True
    ).stdout
    data: dict[str, Any] = json.loads(out)
    return data


def get_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (127.0.0.1 only)
        return json.load(resp)


def host_file(host: str, path: str) -> Any:
    proc = subprocess.run(["docker", "exec", host, "cat", path], capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def delete_tags(record_path: Path) -> int:
    """Deletes every tag of the repository the record names (the lab's own) from the registry."""
    if not record_path.is_file():
        print(f"no {record_path}: nothing was pushed")
        return 0
    repo_ref = json.loads(record_path.read_text())["image"].rpartition(":")[0]
    registry, _, repo = repo_ref.partition("/")
    with urllib.request.urlopen(f"http://{registry}/v2/{repo}/tags/list", timeout=10) as resp:
        tags = json.load(resp).get("tags") or []
    deleted = 0
    for name in tags:
        url = f"http://{registry}/v2/{repo}/manifests/{name}"
        try:
            head = urllib.request.Request(url, method="HEAD", headers={"Accept": MANIFEST_TYPES})
            with urllib.request.urlopen(head, timeout=10) as resp:  # noqa: S310
                digest = resp.headers["Docker-Content-Digest"]
            url = f"http://{registry}/v2/{repo}/manifests/{digest}"
            delete = urllib.request.Request(url, method="DELETE")  # noqa: S310
            urllib.request.urlopen(delete, timeout=10).close()  # noqa: S310
        except urllib.error.HTTPError as err:
            if err.code != 404:  # a tag that shared its digest with one deleted before
                raise
            continue
        deleted += 1
    print(f"deleted {deleted} manifest(s) behind {len(tags)} tag(s) of {registry}/{repo}")
    return 0


def collect() -> dict[str, Any]:
    inv = inventory()
    hostvars = inv["_meta"]["hostvars"]
    image = json.loads((LAB / "sidecar-image.json").read_text())
    releases = [json.loads(p.read_text()) for p in sorted((LAB / "artifacts").glob("*/*/manifest.json"))]
    hosts: list[dict[str, Any]] = []
    for group in ("gpusrv", "pi"):
        for name in inv.get(group, {}).get("hosts", []):
            url = f"http://127.0.0.1:{hostvars[name]['lab_port']}"
            try:
                health = get_json(f"{url}/healthz")
            except (OSError, ValueError) as err:
                health = {"status": f"unreachable ({err})"}
            state = host_file(name, "/opt/hailo-sidecar/release.json") or {}
            hosts.append({"host": name, "group": group, "url": url, "health": health,
                          "release": state.get("current") or {}})  # fmt: skip
    return {"image": image, "releases": releases, "hosts": hosts}


def problems(data: dict[str, Any]) -> list[str]:
    """What is wrong with the lab: a sidecar not healthy, or serving another model or config than
    the release deployed on its host."""
    found = []
    for h in data["hosts"]:
        name, health, current = h["host"], h["health"], h["release"]
        if health.get("status") != "ok":
            found.append(f"{name}: sidecar at {h['url']} is {health.get('status')}")
        model = current.get("model") or {}
        if model and health.get("model_sha256") != model.get("sha256"):
            found.append(f"{name}: serves {health.get('model_sha256')}, deployed {model.get('sha256')}")
        if health.get("config_version") != current.get("config_version"):
            found.append(
                f"{name}: config {health.get('config_version')}, deployed {current.get('config_version')}"
            )
    return found


def render(data: dict[str, Any], timings: list[dict[str, Any]]) -> list[str]:
    image, releases, hosts = data["image"], data["releases"], data["hosts"]
    out = ["", "=== hailo-pipeline lab"]
    for t in timings:
        changed = "" if t.get("changed") is None else f"  changed={t['changed']}"
        out.append(f"  {t['step']:<34} {t['seconds']:>5} s{changed}")
    out += ["", f"image    {image['image']}  (git {image['revision'][:12]}, {image['platform']})",
            f"         {image['ref']}"]  # fmt: skip
    for rel in releases:
        out.append(
            f"release  {rel.get('model')} {rel.get('version')}  config {rel.get('config_version')}  "
            f"{rel.get('hw_arch')}  DFC {rel.get('dfc_version')}"
        )
        out.append(f"         model.hef    sha256 {rel.get('hef_sha256')}")
        out.append(f"         model.onnx   sha256 {rel.get('onnx_sha256')}")
    out.append("")
    for h in hosts:
        health, rel = h["health"], h["release"]
        model = rel.get("model") or {}
        what = f"{rel.get('profile', '?')}"
        if model:
            what += f"  {model.get('name')} {model.get('version')} {model.get('file')}"
            what += f" sha256 {model.get('sha256')}"
        out.append(
            f"{h['group']:<8} {h['host']:<16} {h['url']:<24} {health.get('status')}  "
            f"mode {health.get('serving_mode')}  config {health.get('config_version')}  {what}"
        )
        out.append(f"         image {rel.get('image')}")
    pi = next((h for h in hosts if h["group"] == "pi"), hosts[0] if hosts else None)
    if pi:
        out += ["", "call /infer (one window of 100x9 floats; build/lab/window.json):",
                f"  curl -sS -X POST {pi['url']}/infer -H 'content-type: application/json' "
                f"--data @{shlex.quote('build/lab/window.json')}",
                f"  curl -sS {pi['url']}/healthz    curl -sS {pi['url']}/metrics"]  # fmt: skip
    out += ["", "make lab-down removes the lab."]
    return out


def write_window(path: Path) -> None:
    """A sample IMU window for the curl line (the contract: 100 rows of 9 floats)."""
    from sidecar_app.tools.refmodel import sample_windows

    path.write_text(json.dumps({"x": sample_windows(1)[0].round(4).tolist()}) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--delete-tags", action="store_true", help="delete the lab GPUSrv's tags")
    ap.add_argument("--record", type=Path, default=LAB / "sidecar-image.json", help="the image record")
    ap.add_argument("--timings", type=Path, help="JSON lines {step, seconds, changed} (lab.py)")
    ap.add_argument("--out", type=Path, default=LAB / "summary.json")
    args = ap.parse_args(argv)
    if args.delete_tags:
        return delete_tags(args.record)
    timings = [json.loads(line) for line in args.timings.read_text().splitlines()] if args.timings else []
    data = collect()
    found = problems(data)
    write_window(LAB / "window.json")
    print("\n".join(render(data, timings)))
    args.out.write_text(json.dumps({**data, "timings": timings, "problems": found}, indent=2) + "\n")
    for p in found:
        print(f"lab: {p}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
