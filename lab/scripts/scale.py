"""Controller cost of pi.yml per host (docs/scale.md): N lightweight lab hosts, the controller's
CPU seconds, wall time and memory for each run, printed as a table and written as JSON, each
variant side by side with the first one (ratios of medians).

    python lab/scripts/scale.py [--hosts 5,20,50] [--runs check,cold,warm] [--repeat 3]
                                [--mitogen off,on] [--connection ssh|docker] [--baseline DIR]
                                [--out build/scale.json]

The hosts are systemd containers with sshd (hailo-lab/scale:bookworm, built here from the lab's
host image and Debian's openssh-server) on their own network, reached over SSH as a fleet is
(pipelining and ControlPersist on, ansible.cfg's settings). They run no Docker of their own, so
per N the script measures three runs:
  check  pi.yml --check, every role and phase, on bare hosts (what a dry run of a rollout costs)
  cold   pi.yml --tags base for real: the base role installs and configures each host
  warm   the same again: changed=0, the steady state of a fleet that is already converged
Each run is measured once per variant, the variants one after the other on the same hosts
(check and warm --repeat times, alternating; cold once per variant, on fresh hosts each):
  --mitogen off,on   without and with Mitogen for Ansible (its mitogen_linear strategy)
  --connection docker  the hosts reached as the lab's are (the lab's docker connection; Mitogen's)
  --baseline DIR     also the collection in DIR (e.g. `git archive main | tar -x -C DIR`), first
Controller CPU is user + system time of every process the run started (its forks, ssh and ssh's
masters, Mitogen's multiplexers), counted in a cpuacct cgroup of its own; each run opens its own
connections (what a run leaves, ssh's masters, is ended after it). Memory is the peak of the
summed resident size of its process tree, sampled every 0.5 s. The hosts are removed at the end
(--keep leaves them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lab" / "scripts"))
from stages import ansible_stats_env, mitogen_env, read_stats  # noqa: E402

IMAGE = "hailo-lab/scale:bookworm"
NETWORK = "hailo-scale"
PREFIX = "scale-pi-"
DOCKERFILE = """FROM hailo-lab/systemd:bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      openssh-server && rm -rf /var/lib/apt/lists/* && systemctl enable ssh
"""
# What the lab's bare hosts need for pi.yml (tests/lab/bare): Debian's Docker, no device, an
# unsigned release compiled here, and the image `make images` recorded.
HOST_VARS = {
    "docker_engine_source": "distro",
    "docker_engine_distro_suite": "trixie",
    "base_ntp_servers": ["ntp.lab.internal"],
    "hailort_device_required": False,
    "pi_sidecar_profile": "onnx",
    "sidecar_stack_require_signature": False,
    "sidecar_stack_allowed_signers": "",
}


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def tree_rss_kib(pid: int) -> int:
    """Resident KiB of PID and every descendant (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
        )
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


CPUACCT = Path("/sys/fs/cgroup/cpuacct")


def end_group(group: Path) -> float:
    """Ends what the run left in its cpuacct cgroup (ssh's ControlPersist masters: the next run
    opens its own connections and pays for them), then its CPU seconds; the group is removed."""
    for _ in range(20):
        pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        time.sleep(0.25)
    seconds = int((group / "cpuacct.usage").read_text()) / 1e9
    with contextlib.suppress(OSError):
        group.rmdir()
    return seconds


def measured(cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> dict[str, Any]:
    """Runs CMD; wall seconds, controller CPU seconds, peak tree RSS (MiB), its per-host counts.
    CPU is counted in a cpuacct cgroup of its own where the machine has one (cgroup v1): every
    process the run started, daemons included (ssh's masters leave the process tree); elsewhere
    the process tree's (resource usage of the children waited for)."""
    stats_file = Path(tempfile.mkdtemp(prefix="scale-")) / "stats.json"
    env = {**env, **ansible_stats_env(stats_file, env)}
    group: Path | None = CPUACCT / f"hailo-scale-{os.getpid()}-{time.monotonic_ns()}"
    try:
        group.mkdir()  # type: ignore[union-attr]
    except OSError:
        group = None
    procs = None if group is None else str(group / "cgroup.procs")

    def join_group() -> None:  # in the child, before it runs CMD
        if procs:
            Path(procs).write_text(str(os.getpid()))

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
        preexec_fn=join_group,  # only writes one file
    )  # fmt: skip
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_kib(proc.pid))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.monotonic() - start
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if group is not None:
        cpu = end_group(group)
    rss = round(peak[0] / 1024)
    stats = read_stats(stats_file) or {}
    module_runs: dict[str, int] = {}  # per role, summed over the hosts
    with contextlib.suppress(OSError, ValueError, AttributeError):
        for roles in json.loads(stats_file.read_text()).get("module_runs", {}).values():
            for role, count in roles.items():
                module_runs[role] = module_runs.get(role, 0) + count
    shutil.rmtree(stats_file.parent, ignore_errors=True)
    return {"rc": proc.returncode, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "peak_rss_mib": rss,
            "stats": stats, "module_runs": module_runs, "tail": out[-3000:]}  # fmt: skip


INOTIFY = Path("/proc/sys/fs/inotify/max_user_instances")


def inotify_room(n: int) -> None:
    """Each systemd host takes inotify instances of the machine's one per-user budget (Debian's
    default 128 held 23 hosts next to the lab: from the 24th on, systemd exited with 255, and
    one that did start hung in boot). Raised for N hosts when it is lower, and said so."""
    need = 128 + 8 * n
    have = int(INOTIFY.read_text())
    if have >= need:
        return
    try:
        INOTIFY.write_text(str(need))
    except OSError as e:
        raise SystemExit(f"scale: {n} hosts need fs.inotify.max_user_instances >= {need} (it is {have}): "
                         f"sysctl -w fs.inotify.max_user_instances={need} ({e})") from e  # fmt: skip
    print(f"scale: fs.inotify.max_user_instances {have} -> {need} for {n} systemd hosts", flush=True)


def hosts_up(n: int, pubkey: Path) -> dict[str, str]:
    """N hosts (scale-pi-001...) on the scale network: name -> address."""
    inotify_room(n)
    if sh("docker", "network", "inspect", NETWORK, check=False).returncode != 0:
        sh("docker", "network", "create", "--subnet", "10.214.0.0/22", NETWORK)
    names = [f"{PREFIX}{i:03d}" for i in range(1, n + 1)]
    for name in names:
        if sh("docker", "container", "inspect", name, check=False).returncode == 0:
            continue
        sh("docker", "run", "-d", "--name", name, "--hostname", name, "--network", NETWORK,
           "--cgroupns", "host", "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
           "--security-opt", "apparmor=unconfined", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
           "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",  # noqa: S108 - the host's /tmp
           "--stop-signal", "SIGRTMIN+3",
           "-v", f"{pubkey}:/root/.ssh/authorized_keys:ro", "--label", "io.synchrony.hailo-scale=true",
           IMAGE)  # fmt: skip
    addresses = {}
    for name in names:
        # A host that does not settle in 3 minutes: sshd below decides.
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(["docker", "exec", name, "systemctl", "is-system-running", "--wait"],
                           capture_output=True, timeout=180, check=False)  # fmt: skip
        if sh("docker", "inspect", "-f", "{{.State.Running}}", name).stdout.strip() != "true":
            raise SystemExit(
                f"scale: {name} stopped while booting: {sh('docker', 'logs', '--tail', '5', name).stdout}"
            )
        deadline = time.monotonic() + 60
        while (
            sh("docker", "exec", name, "systemctl", "is-active", "ssh", check=False).stdout.strip()
            != "active"
        ):
            if time.monotonic() > deadline:
                raise SystemExit(f"scale: sshd did not start on {name}")
            time.sleep(0.5)
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        addresses[name] = sh("docker", "inspect", "-f", fmt, name).stdout.strip()
    return addresses


def hosts_down() -> None:
    ids = sh("docker", "ps", "-aq", "--filter", "label=io.synchrony.hailo-scale=true").stdout.split()
    if ids:
        sh("docker", "rm", "-f", "-v", *ids)
    sh("docker", "network", "rm", NETWORK, check=False)


# The connection per --connection and variant: Mitogen takes the place of Ansible's `ssh` and
# `docker` by those names; the lab's own docker connection (its runc retry) is its plain variant.
CONNECTIONS = {("ssh", False): "ssh", ("ssh", True): "ssh",
               ("docker", False): "synchrony.hailo_lab.docker", ("docker", True): "docker"}  # fmt: skip


def inventory(
    path: Path, addresses: dict[str, str], key: Path, extra: dict[str, Any], connection: str
) -> None:
    by_ssh = connection == "ssh"
    hosts = {name: {"ansible_host": ip if by_ssh else name} for name, ip in addresses.items()}
    data = {"all": {"children": {"pi": {"hosts": hosts, "vars": {
        "ansible_connection": connection, "ansible_user": "root", "ansible_ssh_private_key_file": str(key),
        # Fresh containers with fresh host keys; Mitogen reads the setting, not ssh's options.
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ansible_host_key_checking": False,
        **HOST_VARS, **extra}}}}}  # fmt: skip
    path.write_text(json.dumps(data))


RUNS = {"check": ["--check"], "cold": ["--tags", "base"], "warm": ["--tags", "base"]}


def variants(trees: list[Path], mitogen: list[str]) -> list[dict[str, Any]]:
    """Each collection tree with Mitogen off and/or on: its name, tree and environment."""
    out = []
    for tree in trees:
        # A baseline tree resolves its own roles (synchrony.hailo_pipeline) and ansible.cfg; the lab's
        # collection (its connection and run_stats callback) is this checkout's.
        link = tree / ".ansible" / "collections" / "ansible_collections" / "synchrony" / "hailo_pipeline"
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(tree)
        paths = f"{tree}/.ansible/collections:{ROOT}/.ansible/collections"
        env = {**os.environ, "ANSIBLE_CONFIG": str(tree / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
               "ANSIBLE_COLLECTIONS_PATH": paths}  # fmt: skip
        for mode in mitogen:
            name = ("this" if tree == ROOT else "baseline") + ("+mitogen" if mode == "on" else "")
            extra = mitogen_env() if mode == "on" else {}
            out.append({"name": name, "tree": tree, "mitogen": mode == "on", "env": {**env, **extra}})
    return out


def median_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per N, run and variant: medians of its runs and the ratio of its CPU per host to
    the first variant's."""
    keys: dict[tuple[int, str, str], list[dict[str, Any]]] = {}
    for r in results:
        keys.setdefault((r["hosts"], r["run"], r["variant"]), []).append(r)
    rows: list[dict[str, Any]] = []
    first: dict[tuple[int, str], float] = {}
    for (n, run, variant), rs in keys.items():
        row: dict[str, Any] = {"hosts": n, "run": run, "variant": variant, "runs": len(rs)}
        for field in ("wall_s", "cpu_s", "cpu_s_per_host", "peak_rss_mib", "changed"):
            row[field] = statistics.median(r[field] for r in rs)
        base = first.setdefault((n, run), row["cpu_s_per_host"])
        row["ratio"] = round(row["cpu_s_per_host"] / base, 2) if base else None
        rows.append(row)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", default="5,20,50", help="host counts, comma-separated")
    ap.add_argument("--forks", type=int, default=50)
    ap.add_argument("--runs", default="check,cold,warm")
    ap.add_argument("--repeat", type=int, default=1, help="check and warm runs per variant (medians)")
    ap.add_argument("--mitogen", default="off,on", help="off, on or off,on")
    ap.add_argument("--connection", choices=["ssh", "docker"], default="ssh",
                    help="ssh as a fleet, or docker as the lab's hosts")  # fmt: skip
    ap.add_argument("--baseline", type=Path, help="another collection tree, measured first")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "scale.json")
    ap.add_argument("--keep", action="store_true", help="leave the hosts running")
    a = ap.parse_args()
    counts = [int(n) for n in a.hosts.split(",")]
    runs = a.runs.split(",")
    trees = [a.baseline.resolve(), ROOT] if a.baseline else [ROOT]
    todo = variants(trees, a.mitogen.split(","))
    work = ROOT / "build" / "scale"
    work.mkdir(parents=True, exist_ok=True)
    key = work / "id_ed25519"
    if not key.exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    with tempfile.TemporaryDirectory() as ctx:
        Path(ctx, "Dockerfile").write_text(DOCKERFILE)
        sh("docker", "build", "-q", "-t", IMAGE, ctx)
    release = work / "releases" / "imu-encoder" / "1.0.0"
    if not (release / "manifest.json").exists():
        sh(sys.executable, str(ROOT / "lab" / "scripts" / "release.py"), "release", str(work / "releases"),
           "imu-encoder", "1.0.0", "scale-1")  # fmt: skip
    image = json.loads((ROOT / "build" / "images.json").read_text())["ref"]
    extra = {"sidecar_stack_release_dir": str(release), "sidecar_stack_image": image}
    playbook = str(Path(sys.executable).parent / "ansible-playbook")
    results: list[dict[str, Any]] = []

    def measure(n: int, addresses: dict[str, str], run: str, variant: dict[str, Any]) -> None:
        inv = work / f"hosts-{n}-{variant['name']}.json"
        inventory(inv, addresses, key, extra, CONNECTIONS[a.connection, variant["mitogen"]])
        batches = '{"pi_rollout_batches": ["100%"]}'
        pi_yml = str(variant["tree"] / "playbooks" / "pi.yml")
        cmd = [playbook, pi_yml, "-i", str(inv), "-e", batches, *RUNS[run]]
        r = measured(cmd, {**variant["env"], "ANSIBLE_FORKS": str(a.forks)}, cwd=variant["tree"])
        changed = sum(h["changed"] for h in r["stats"].values())
        row = {"hosts": n, "run": run, "variant": variant["name"], "forks": min(a.forks, n), "rc": r["rc"],
               "wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "cpu_s_per_host": round(r["cpu_s"] / n, 2),
               "wall_s_per_host": round(r["wall_s"] / n, 2), "peak_rss_mib": r["peak_rss_mib"],
               "changed": changed, "reached": len(r["stats"]),
               "module_runs_per_host": {k: round(v / n, 1) for k, v in sorted(r["module_runs"].items())},
               }  # fmt: skip
        results.append(row)
        print(json.dumps(row), flush=True)
        if r["rc"] != 0:
            print(r["tail"], file=sys.stderr)

    def fresh(n: int) -> dict[str, str]:
        hosts_down()
        return hosts_up(n, key.with_suffix(".pub"))

    try:
        for n in counts:
            addresses = fresh(n)
            # check (bare hosts), then cold with the first variant, then warm: every variant on the
            # same hosts, alternating; then cold again for each other variant, on fresh hosts.
            for run in ("check", "warm"):
                if run == "warm" and "cold" in runs:
                    measure(n, addresses, "cold", todo[0])
                if run in runs:
                    for _ in range(a.repeat):
                        for variant in todo:
                            measure(n, addresses, run, variant)
            if "cold" in runs:
                for variant in todo[1:]:
                    measure(n, fresh(n), "cold", variant)
            if not (a.keep and n == counts[-1]):
                hosts_down()
    finally:
        if not a.keep:
            hosts_down()
    rows = median_rows(results)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"runs": results, "medians": rows}, indent=2) + "\n")
    head = ("N", "run", "variant", "runs", "wall s", "CPU s", "CPU s/host", "ratio", "peak MiB", "changed")
    print("\n{:>4} {:<6} {:<17} {:>4} {:>8} {:>8} {:>10} {:>6} {:>9} {:>8}".format(*head))
    for r in rows:
        print(f"{r['hosts']:>4} {r['run']:<6} {r['variant']:<17} {r['runs']:>4} {r['wall_s']:>8} "
              f"{r['cpu_s']:>8} {r['cpu_s_per_host']:>10} {r['ratio']!s:>6} {r['peak_rss_mib']:>9} "
              f"{r['changed']:>8}")  # fmt: skip
    return 1 if any(r["rc"] != 0 for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
