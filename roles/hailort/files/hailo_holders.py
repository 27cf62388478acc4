"""hailo_holders.py DEVICE OWNER_PROJECT: prints, as JSON, the processes that hold DEVICE open but
are not in a container of the Compose project OWNER_PROJECT (the sidecar stack): pid, command,
the container (id, name, project) and a sentence naming them (synchrony.hailo_pipeline.hailort).

HailoRT gives a device to one process: any other holder makes the sidecar fail with status 74
(HAILO_OUT_OF_PHYSICAL_DEVICES).
"""

import json
import os
import re
import shutil
import subprocess
import sys

CONTAINER_ID = re.compile(r"([0-9a-f]{64})")


def holds(pid, device):
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == device:
                return True
        except OSError:
            continue
    return False


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def container(cid):
    if not cid or not shutil.which("docker"):
        return {"id": cid, "name": None, "project": None}
    out = subprocess.run(
        [
            "docker",
            "inspect",
            "--format",
            '{{.Name}}|{{index .Config.Labels "com.docker.compose.project"}}',
            cid,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    name, _sep, project = out.stdout.strip().partition("|")
    return {"id": cid, "name": name.lstrip("/") or None, "project": project or None}


def describe(h):
    c = h["container"]
    where = f"container {c['name'] or c['id'][:12]} ({c['id'][:12]})" if c else "not in a container"
    return f"PID {h['pid']} ({h['comm']}, {where})"


def main(device, owner):
    holders = []
    for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
        if int(pid) == os.getpid() or not holds(pid, device):
            continue
        ids = CONTAINER_ID.findall(read(f"/proc/{pid}/cgroup"))
        h = {
            "pid": int(pid),
            "comm": read(f"/proc/{pid}/comm"),
            "cmdline": read(f"/proc/{pid}/cmdline")[:200],
            "container": container(ids[-1]) if ids else None,
        }
        if h["container"] and h["container"]["project"] == owner:
            continue
        h["description"] = describe(h)
        names = [h["container"]["name"] or h["container"]["id"][:12]] if h["container"] else []
        h["fix"] = f"docker rm -f {names[0]}" if names else f"kill {pid}"
        holders.append(h)
    print(json.dumps(holders))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
