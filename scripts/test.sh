#!/usr/bin/env bash
# The project's test command (`make test`, run by .ci/run): brings up what the tests need
# (set-up: dockerd, registry, host images, venv) and the runtime image (linux/arm64, pushed),
# then three groups at once: the lab; lint, unit + API tests and the image and Compose checks;
# Molecule's scenario (extensions/molecule/default: the base role).
# The lab stage proves the playbooks on the lab's hosts (lab/README.md):
#   1. bare hosts: both playbooks and every role's phases in check mode (tests/lab/bare)
#   2. `make lab`, the README's main job, cold
#   3. the testinfra suite for real hosts (tests/infra), then two sides at once, each ending
#      with its playbook run again from the collection tarball installed as a Galaxy user would
#      (it must report changed=0):
#      GPUSrv: the lab's checks of GPUSrv (runner, image, mirror, bad variables, the release key)
#      Pis: the lab's checks of the Pis (host state, HailoRT field failures, bad variables,
#      monitoring, the acceptance flow)
#   4. rollouts: a release that fails its smoke stops at the canary and is rolled back, a good
#      one reaches every Pi (tests/lab/rollout)
#   5. pull mode: a Pi's agent applies a signed tag from GPUSrv's fleet repository and refuses an
#      unsigned one and an older one (tests/lab/pull)
#   6. `make lab-down`
# Prints the time per stage and a closing summary. `scripts/test.sh STAGE [ARG]` runs one stage.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
export PATH="$ROOT/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
export PY_COLORS=0 ANSIBLE_FORCE_COLOR=0 NO_COLOR=1
# shellcheck source=lab/scripts/lib.sh
. "$ROOT/lab/scripts/lib.sh"
# The failed stages' reports, printed again above the summary (lib.sh's stage).
STAGE_FAILURES="$(mktemp -d "${TMPDIR:-/tmp}/hailo-failures.XXXXXX")"

PYTEST=(python -m pytest -q -p no:cacheprovider -rfE --tb=short --durations=10)

lint() {
  local rc=0
  local -a files
  echo "--- yamllint";     yamllint --strict . || rc=1
  echo "--- ansible-lint"; ansible-lint --profile production --strict -q || rc=1
  echo "--- ruff";         ruff check . && ruff format --check . || rc=1
  echo "--- mypy";         mypy || rc=1
  mapfile -t files < <(git ls-files '*.sh' .ci/run)
  echo "--- shellcheck";   shellcheck -x "${files[@]}" || rc=1
  mapfile -t files < <(git ls-files '*Dockerfile*')
  echo "--- hadolint";     hadolint "${files[@]}" || rc=1
  echo "--- actionlint";   actionlint || rc=1
  return "$rc"
}

unit() {
  "${PYTEST[@]}" tests/unit
}

images() {
  make -s images && "${PYTEST[@]}" -rA tests/images
}

infra() {
  "${PYTEST[@]}" -rA tests/infra --ansible-inventory="${1:-lab/inventory/hosts.yml}"
}

# The lab's stages (lab/README.md). Each stage after the cold `make lab` works on the hosts it
# names; the GPUSrv side and the Pi side run at the same time (their tests use the other side's
# services, never its state), each ending with its playbook's idempotence run.
lab() {
  local rc=0
  # A cold lab: one left running is removed first.
  bash lab/scripts/lab.sh down >/dev/null 2>&1 || true
  rm -f build/docker-exec-retries.log
  stage "lab: bare hosts, check mode" lab_bare || rc=1
  if [ "$rc" -eq 0 ]; then stage "lab: make lab (cold)" bash lab/scripts/lab.sh up --hosts-ready || rc=1; fi
  if [ "$rc" -eq 0 ]; then
    # Before the two sides: it reads both sides' hosts, which their tests break and repair.
    stage "lab: tests/infra" infra lab/inventory/hosts.yml || rc=1
    together lab_gpusrv_side lab_pi_side || rc=1
    stage "lab: rollouts" "${PYTEST[@]}" tests/lab/rollout || rc=1
    stage "lab: pull mode" "${PYTEST[@]}" tests/lab/pull || rc=1
  fi
  if [ "$rc" -ne 0 ] && [ -d build/lab/logs ]; then
    rm -rf build/lab-logs && cp -r build/lab/logs build/lab-logs && echo "lab: logs kept in build/lab-logs"
  fi
  stage "lab: make lab-down" bash lab/scripts/lab.sh down >/dev/null || rc=1
  # The lab's connection ran again any docker exec that runc failed to start (lab/plugins/connection).
  if [ -s build/docker-exec-retries.log ]; then
    echo "lab: $(wc -l <build/docker-exec-retries.log) docker exec(s) that runc did not start were run again" \
      "(build/docker-exec-retries.log)"
  fi
  return "$rc"
}

# `make lab`'s first steps (hosts, scaffolding), then both playbooks and each role's phases in
# check mode on the bare hosts.
lab_bare() { bash lab/scripts/lab.sh hosts && "${PYTEST[@]}" tests/lab/bare; }

# The converged checks of GPUSrv; every other module in tests/lab/converged is the Pi side's.
GPUSRV_CHECKS=(tests/lab/converged/test_gpusrv.py tests/lab/converged/test_gpusrv_guards.py
  tests/lab/converged/test_release_key.py)

lab_gpusrv_side() {
  local rc=0
  stage "lab: GPUSrv checks" "${PYTEST[@]}" "${GPUSRV_CHECKS[@]}" || rc=1
  stage "lab: gpusrv.yml again, installed tarball" \
    bash lab/scripts/lab.sh up --hosts-ready --expect-unchanged --installed --only gpusrv || rc=1
  return "$rc"
}

lab_pi_side() {
  local rc=0
  stage "lab: Pi checks" "${PYTEST[@]}" tests/lab/converged "${GPUSRV_CHECKS[@]/#/--ignore=}" || rc=1
  stage "lab: pi.yml again, installed tarball" \
    bash lab/scripts/lab.sh up --hosts-ready --expect-unchanged --installed --only pi || rc=1
  return "$rc"
}

# The lab is the longest group: the other two yield the CPU to it (their processes, not the
# containers Docker starts for them).
checks_group() {
  local rc=0
  renice -n 10 -p "$BASHPID" >/dev/null || true
  stage lint lint || rc=1
  stage "unit + API tests" unit || rc=1
  stage "images + compose" images || rc=1
  return "$rc"
}
molecule_group() {
  renice -n 10 -p "$BASHPID" >/dev/null || true
  molecule_all
}

molecule_all() {
  local rc=0 s scenarios
  if [ -n "${1:-}" ]; then scenarios="$1"; else
    scenarios="$(find extensions/molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' | xargs -n1 basename | sort)"
  fi
  for s in $scenarios; do
    stage "molecule $s" molecule test -s "$s" || rc=1
  done
  return "$rc"
}

case "${1:-all}" in
  lint) stage lint lint; stage_summary ;;
  unit) stage "unit + API tests" unit; stage_summary ;;
  images) stage "images + compose" images; stage_summary ;;
  infra) stage "tests/infra" infra "${2:-}"; stage_summary ;;
  lab) lab; stage_summary ;;
  molecule) molecule_all "${2:-}"; stage_summary ;;
  all)
    stage setup bash lab/scripts/setup.sh || { stage_summary; exit 1; }
    # The image every later stage uses (cached per revision): built once, before they start.
    stage "runtime image (make images)" make -s images || { stage_summary; exit 1; }
    # Three groups at once: the lab (the longest; it waits on containers, QEMU and apt much of
    # the time) next to the checks of this checkout and to Molecule's own hosts.
    together lab checks_group molecule_group
    stage_summary
    ;;
  *) echo "usage: $0 [all|lint|unit|images|infra [INVENTORY]|lab|molecule [SCENARIO]]" >&2; exit 2 ;;
esac
