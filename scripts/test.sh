#!/usr/bin/env bash
# The project's test command (`make test`, run by .ci/run): brings up what the tests need
# (set-up: dockerd, registry, images, venv), then lint, unit + API tests, the runtime image
# (amd64 + arm64, pushed, manifest list, image and Compose checks), the lab (`make lab` twice
# with tests/infra against its hosts), Molecule scenarios.
# Prints the time per stage and a closing summary. `scripts/test.sh STAGE [ARG]` runs one stage.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
export PATH="$ROOT/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
export PY_COLORS=0 ANSIBLE_FORCE_COLOR=0 NO_COLOR=1

declare -a NAMES=() RESULTS=() TIMES=()

stage() {
  local name="$1" t0 rc
  shift
  echo
  echo "=== stage: $name"
  t0="$(date +%s)"
  "$@"
  rc=$?
  NAMES+=("$name")
  TIMES+=("$(($(date +%s) - t0))")
  if [ "$rc" -eq 0 ]; then RESULTS+=("pass"); else RESULTS+=("FAIL (exit $rc)"); fi
  return "$rc"
}

lint() {
  local rc=0
  local -a files
  echo "--- yamllint";     yamllint --strict . || rc=1
  echo "--- ansible-lint"; ansible-lint --profile production --strict -q || rc=1
  echo "--- ruff";         ruff check . && ruff format --check . || rc=1
  echo "--- mypy";         mypy || rc=1
  echo "--- shellcheck";   shellcheck -x scripts/*.sh scripts/lab/*.sh images/*/*.sh .ci/run || rc=1
  mapfile -t files < <(git ls-files '*Dockerfile*')
  echo "--- hadolint";     [ "${#files[@]}" -eq 0 ] || hadolint "${files[@]}" || rc=1
  echo "--- collection build"
  ansible-galaxy collection build --force --output-path "$(mktemp -d)" . >/dev/null || rc=1
  echo "--- actionlint";   if [ -d .github/workflows ]; then actionlint || rc=1; else echo "no workflows"; fi
  return "$rc"
}

unit() {
  python -m pytest tests/unit -q -p no:cacheprovider
}

images() {
  bash scripts/images.sh && python -m pytest tests/images -q -p no:cacheprovider -rA --tb=short
}

infra() {
  python -m pytest tests/infra -q -p no:cacheprovider -rA --tb=short \
    --ansible-inventory="${1:-inventories/lab/hosts.yml}"
}

# The README's main command end to end: `make lab` cold, the testinfra suite against its hosts,
# `make lab` again (must change nothing), `make lab-down`.
lab() {
  local rc=0
  echo "--- a cold lab: make lab-down first (a lab left running is removed)"
  bash scripts/lab/lab.sh down >/dev/null 2>&1 || true
  bash scripts/lab/lab.sh up || rc=1
  if [ "$rc" -eq 0 ]; then
    echo "--- tests/infra against the lab"
    infra inventories/lab/hosts.yml || rc=1
    # The hardware acceptance's flow on a lab Pi: testinfra and the sidecar benchmark run, the
    # figures are printed, and the host is refused for the one thing the lab has not: the device.
    echo "--- playbooks/acceptance.yml on lab-pi-trixie (no device: must be refused for that alone)"
    ansible-playbook playbooks/acceptance.yml -i inventories/lab/hosts.yml -l lab-pi-trixie \
      -e acceptance_bench_seconds=5 >build/lab/logs/acceptance.log 2>&1
    if grep -q "lab-pi-trixie is not accepted: no Hailo device at /dev/hailo0\.'" build/lab/logs/acceptance.log \
       && grep -q "testinfra: [0-9]* passed, [0-9]* skipped" build/lab/logs/acceptance.log \
       && grep -Eq "c=1 +[0-9.]+ windows/s +p50" build/lab/logs/acceptance.log; then
      grep -E "testinfra:|windows/s|MET|MISS|not accepted" build/lab/logs/acceptance.log | head -12
    else
      cat build/lab/logs/acceptance.log
      echo "lab: the acceptance playbook did not run as expected (above)" >&2
      rc=1
    fi
    echo "--- make lab again: idempotent"
    bash scripts/lab/lab.sh up || rc=1
    if grep '"step": "playbooks/' build/lab/timings.jsonl | grep -v '"changed": 0}'; then
      echo "lab: the second run changed something (above)" >&2
      rc=1
    fi
  fi
  if [ "$rc" -ne 0 ] && [ -d build/lab/logs ]; then
    rm -rf build/lab-logs && cp -r build/lab/logs build/lab-logs && echo "lab: logs kept in build/lab-logs"
  fi
  bash scripts/lab/lab.sh down || rc=1
  return "$rc"
}

molecule_all() {
  local rc=0 s scenarios
  if [ -n "${1:-}" ]; then scenarios="$1"; else
    scenarios="$(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' | xargs -n1 basename | sort)"
  fi
  for s in $scenarios; do
    stage "molecule $s" molecule test -s "$s" || rc=1
  done
  return "$rc"
}

summary() {
  local i failed=0 passed=0
  echo
  echo "=== summary"
  for i in "${!NAMES[@]}"; do
    printf '  %-28s %-16s %5ss\n' "${NAMES[$i]}" "${RESULTS[$i]}" "${TIMES[$i]}"
    if [ "${RESULTS[$i]}" = "pass" ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  done
  echo "stages: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

case "${1:-all}" in
  lint) stage lint lint; summary ;;
  unit) stage "unit + API tests" unit; summary ;;
  images) stage "images + compose" images; summary ;;
  infra) stage "tests/infra" infra "${2:-}"; summary ;;
  lab) stage "lab + tests/infra" lab; summary ;;
  molecule) molecule_all "${2:-}"; summary ;;
  all)
    stage setup bash scripts/lab/setup.sh || { summary; exit 1; }
    stage lint lint
    stage "unit + API tests" unit
    stage "images + compose" images
    stage "lab + tests/infra" lab
    molecule_all
    summary
    ;;
  *) echo "usage: $0 [all|lint|unit|images|infra [INVENTORY]|lab|molecule [SCENARIO]]" >&2; exit 2 ;;
esac
