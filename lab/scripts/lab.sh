#!/usr/bin/env bash
# The built-in lab: `make lab` (up) and `make lab-down` (down). See docs/lab.md.
#   up    sets up what is missing (make setup), creates the lab's hosts (inventories/lab: one
#         GPUSrv, two Pis, as containers), runs playbooks/gpusrv.yml and playbooks/pi.yml
#         against them as in production, and prints a summary (scripts/lab/summary.py).
#         Run again, it changes nothing and says so (changed=0 per playbook).
#   down  removes the hosts (and their Docker data), the tags the lab pushed and build/lab.
# Logs of every step: build/lab/logs/. Exit status: non-zero when a step fails or a sidecar
# is not healthy.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH" ANSIBLE_CONFIG="$ROOT/ansible.cfg"
LAB="$ROOT/build/lab"
INV=inventories/lab/hosts.yml
TIMINGS="$LAB/timings.jsonl"

# step NAME CMD...: runs CMD with its output shown and logged, then records its time and, for a
# playbook, the sum of changed= over its PLAY RECAP.
step() {
  local name="$1" log t0 rc changed
  shift
  log="$LAB/logs/$(echo "$name" | tr -c 'a-zA-Z0-9\n' '-' | tr -s '-').log"
  echo
  echo "=== lab: $name"
  t0="$(date +%s)"
  set +e
  "$@" 2>&1 | tee "$log"
  rc="${PIPESTATUS[0]}"
  set -e
  changed="$(awk '/^PLAY RECAP/ {r = 1; next} r && /changed=/ {sub(/.*changed=/, ""); s += $1} END {print (r ? s : "null")}' "$log")"
  printf '{"step": "%s", "seconds": %s, "changed": %s}\n' "$name" "$(($(date +%s) - t0))" "$changed" >>"$TIMINGS"
  if [ "$rc" -ne 0 ]; then
    echo "lab: '$name' failed (exit $rc); log: ${log#"$ROOT"/}" >&2
    exit "$rc"
  fi
}

up() {
  mkdir -p "$LAB/logs"
  : >"$TIMINGS"
  step "set-up (make setup)" bash scripts/lab/setup.sh
  step "lab hosts and scaffolding" ansible-playbook scripts/lab/up.yml -i "$INV" -e "lab_ephemeral=$LAB"
  # The stand-in runner contacts nothing: any token will do (production: the real one, from the
  # environment).
  step "playbooks/gpusrv.yml" env HAILO_RUNNER_TOKEN="${HAILO_RUNNER_TOKEN:-lab-registration-token}" \
    ansible-playbook playbooks/gpusrv.yml -i "$INV"
  # Both Pis in one batch (production: a canary first, pi_rollout_batches).
  step "playbooks/pi.yml" ansible-playbook playbooks/pi.yml -i "$INV" \
    -e '{"pi_rollout_batches": ["100%"]}' -e "pi_rollout_report=$LAB/rollout.json"
  python scripts/lab/summary.py --timings "$TIMINGS"
}

down() {
  if ! command -v ansible-playbook >/dev/null; then
    echo "lab: no .venv here, so no lab was made from this checkout (make lab creates both)" >&2
    exit 0
  fi
  ansible-playbook scripts/lab/hosts.yml -i "$INV" -e lab_state=absent -e "lab_ephemeral=$LAB"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 [up|down]" >&2; exit 2 ;;
esac
