#!/usr/bin/env bash
# The project's test command (`make test`, run by .ci/run): brings up what the tests need
# (set-up: dockerd, registry, images, venv), then lint, unit + API tests, the runtime image
# (amd64 + arm64, pushed, manifest list, image and Compose checks), Molecule scenarios.
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
  molecule) molecule_all "${2:-}"; summary ;;
  all)
    stage setup bash scripts/lab/setup.sh || { summary; exit 1; }
    stage lint lint
    stage "unit + API tests" unit
    stage "images + compose" images
    molecule_all
    summary
    ;;
  *) echo "usage: $0 [all|lint|unit|images|molecule [SCENARIO]]" >&2; exit 2 ;;
esac
