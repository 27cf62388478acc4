# shellcheck shell=bash
# Step runner shared by the lab scripts: numbered steps, wall time each, "cached" when a step
# found nothing to do, and a one-line summary.

_STEP_N=0
_STEP_CACHED=0
_STEP_T0="$(date +%s)"

die() {
  printf '\nERROR: %s\n' "$*" >&2
  exit 1
}

_STEP_LOG="${HAILO_LAB_LOG:-${TMPDIR:-/tmp}/hailo-lab-setup.log}"
_STEP_MARK="$(mktemp "${TMPDIR:-/tmp}/hailo-lab-step.XXXXXX")"
trap 'rm -f "$_STEP_MARK"' EXIT

# Called by a step that found nothing to do.
cached() { echo 1 >"$_STEP_MARK"; }

# wait_for LABEL SECONDS CMD...: retries CMD once a second until it succeeds or time runs out.
wait_for() {
  local label="$1" secs="$2" i
  shift 2
  for ((i = 0; i < secs; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  die "$label did not come up within ${secs}s"
}

# run_step NAME DESCRIPTION: runs step_NAME unless NAME is in HAILO_LAB_SKIP.
run_step() {
  local name="$1" desc="$2" t0 dt
  _STEP_N=$((_STEP_N + 1))
  if [[ " ${HAILO_LAB_SKIP:-} " == *" $name "* ]]; then
    printf '[%2d] %-62s skipped\n' "$_STEP_N" "$desc"
    return
  fi
  printf '[%2d] %-62s ' "$_STEP_N" "$desc"
  : >"$_STEP_MARK"
  t0="$(date +%s)"
  echo "=== step $name" >>"$_STEP_LOG"
  # Each step runs in a subshell with its output in the log; a failure shows the log's tail.
  if ! ("step_$name") >>"$_STEP_LOG" 2>&1; then
    echo "FAILED"
    tail -n 25 "$_STEP_LOG" >&2
    die "step '$name' failed (full log: $_STEP_LOG)"
  fi
  dt=$(($(date +%s) - t0))
  if [ -s "$_STEP_MARK" ]; then
    _STEP_CACHED=$((_STEP_CACHED + 1))
    echo "cached"
  else
    echo "done (${dt}s)"
  fi
}

summary() {
  echo "set-up: $_STEP_N steps, $_STEP_CACHED cached, $(($(date +%s) - _STEP_T0))s"
}
