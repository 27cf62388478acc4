#!/usr/bin/env bash
# The built-in lab: `make lab` (up), `make lab-down` (down). See lab/README.md.
#   up      sets up what is missing (make setup), builds and pushes the runtime image (make
#           images; cached per revision), creates the lab's hosts (lab/inventory: one GPUSrv, two
#           Pis, as containers), runs playbooks/gpusrv.yml and playbooks/pi.yml against them as
#           in production, and prints a summary (lab/scripts/summary.py). Run again, it changes
#           nothing and says so (changed=0 per playbook). --expect-unchanged: fail when a
#           playbook changed something (the test command's idempotence check). --installed: run
#           the playbooks from the collection tarball installed as a Galaxy user would
#           (build/lab/galaxy), not from this checkout. --hosts-ready: the hosts and their
#           scaffolding are there already (`lab.sh hosts` or an earlier `up` made them): straight to
#           the playbooks (the test command; it saves the scaffolding's two minutes). --only
#           gpusrv|pi: that playbook alone, on a lab that ran both before (the test command runs
#           the two idempotence checks next to other tests, each when its hosts' tests are done).
#   hosts   only the hosts and the lab's scaffolding on them, no playbook (bare hosts: the test
#           command runs the playbooks in check mode there first)
#   down    removes the hosts (and their Docker data), the tags the lab pushed and build/lab.
# Logs of every step: build/lab/logs/. Exit status: non-zero when a step fails or a sidecar is
# not healthy.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$ROOT/ansible.cfg"
LAB="$ROOT/build/lab"
INV=lab/inventory/hosts.yml
export STAGE_LOGS="$LAB/logs"
# shellcheck source=lab/scripts/lib.sh
. "$ROOT/lab/scripts/lib.sh"

# step NAME CMD...: a stage that stops the lab when it fails.
step() {
  local name="$1" rc=0
  shift
  stage "$name" "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "lab: '$name' failed (exit $rc); logs: ${STAGE_LOGS#"$ROOT"/}/" >&2
    exit "$rc"
  fi
}

hosts() {
  mkdir -p "$LAB"
  step "set-up (make setup)" bash lab/scripts/setup.sh
  step "runtime image (make images)" make -s images
  step "lab hosts and scaffolding" ansible-playbook lab/playbooks/up.yml -i "$INV"
}

# The collection as Galaxy users get it: the tarball, installed into a folder of its own.
install_tarball() {
  local galaxy="$LAB/galaxy${1:+-$1}"
  rm -rf "$galaxy" && mkdir -p "$galaxy"
  ansible-galaxy collection build --force --output-path "$galaxy" . >/dev/null
  # The folder is the collections path of the runs that use it (ansible-galaxy warns otherwise).
  ANSIBLE_COLLECTIONS_PATH="$galaxy/collections" \
    ansible-galaxy collection install --force --no-deps -p "$galaxy/collections" "$galaxy"/*.tar.gz >/dev/null
  echo "$galaxy/collections"
}

up() {
  local expect_unchanged="" hosts_ready="" installed="" only="" playbooks=playbooks
  local -a extra=()
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --expect-unchanged) expect_unchanged=1 ;;
      --hosts-ready) hosts_ready=1 ;;
      --installed) installed=1 ;;
      --only)
        only="${2:-}"
        [[ "$only" =~ ^(gpusrv|pi)$ ]] || { echo "lab: --only gpusrv or --only pi" >&2; exit 2; }
        shift
        ;;
      *) echo "usage: $0 up [--expect-unchanged] [--installed] [--hosts-ready] [--only gpusrv|pi]" >&2; exit 2 ;;
    esac
    shift
  done
  if [ -n "$installed" ]; then
    ANSIBLE_COLLECTIONS_PATH="$(install_tarball "$only")"
    export ANSIBLE_COLLECTIONS_PATH
    playbooks="$ANSIBLE_COLLECTIONS_PATH/ansible_collections/synchrony/hailo_pipeline/playbooks"
    # No git checkout around the installed sources: the revision is given, as a Galaxy user would.
    extra=(-e "sidecar_image_revision=$(PRINT_REVISION=1 bash images/runtime/build.sh)")
    echo "lab: playbooks from the installed collection tarball (${playbooks#"$ROOT"/})"
  fi
  if [ -z "$hosts_ready" ]; then hosts; fi
  # The stand-in runner contacts nothing: any token will do (production: the real one, from the
  # environment).
  if [ "$only" != pi ]; then
    step "playbooks/gpusrv.yml" env HAILO_RUNNER_TOKEN="${HAILO_RUNNER_TOKEN:-lab-registration-token}" \
      ansible-playbook "$playbooks/gpusrv.yml" -i "$INV" "${extra[@]}"
  fi
  if [ "$only" != gpusrv ]; then
    # Both Pis in one batch (production: a canary first, pi_rollout_batches).
    step "playbooks/pi.yml" ansible-playbook "$playbooks/pi.yml" -i "$INV" \
      -e '{"pi_rollout_batches": ["100%"]}' -e "pi_rollout_report=$LAB/rollout.json"
  fi
  local timings="$LAB/timings${only:+-$only}.jsonl"
  stage_json >"$timings"
  # With --only, the other hosts may be under test meanwhile: no summary of the whole lab.
  if [ -z "$only" ]; then python lab/scripts/summary.py --timings "$timings"; fi
  if [ -n "$expect_unchanged" ]; then
    python - "$timings" <<'PY'
import json, sys
changed = [s for s in map(json.loads, open(sys.argv[1])) if s["step"].startswith("playbooks/") and s["changed"] != 0]
for s in changed:
    print(f"lab: {s['step']} changed {s['changed']} on a second run (expected 0)", file=sys.stderr)
sys.exit(1 if changed else 0)
PY
  fi
}

down() {
  if ! command -v ansible-playbook >/dev/null; then
    echo "lab: no .venv here, so no lab was made from this checkout (make lab creates both)" >&2
    exit 0
  fi
  ansible-playbook lab/playbooks/hosts.yml -i "$INV" -e lab_state=absent
}

case "${1:-up}" in
  up) shift; up "$@" ;;
  hosts) hosts ;;
  down) down ;;
  *) echo "usage: $0 [up [--expect-unchanged] [--installed] [--hosts-ready] [--only gpusrv|pi]|hosts|down]" >&2; exit 2 ;;
esac
