# shellcheck shell=bash
# The step runner of the lab's scripts (setup.sh, lab.sh) and the test command (scripts/test.sh).
#   run_step NAME DESC   a quiet set-up step: step_NAME's output goes to a log, one line per step
#                        with its time, "cached" when it found nothing to do (setup.sh)
#   run_steps NAME DESC [NAME DESC ...]
#                        set-up steps that need nothing from each other, at the same time; the
#                        same lines, in the order given (setup.sh)
#   stage NAME CMD...    a visible step: its output on the terminal and, with STAGE_LOGS set, in
#                        STAGE_LOGS/NAME.log; its time, result and (for a playbook) the sum of
#                        changed= are recorded; stage_summary prints them, after the reports of
#                        the failed stages when STAGE_FAILURES is set (lab.sh, test.sh)
#   together GROUP...    runs groups of stages at the same time (each GROUP a function that calls
#                        `stage`), each group's output into a log that is printed whole when the
#                        group ends; the stages' results join the summary (test.sh)

_STEP_N=0
_STEP_CACHED=0
_STEP_T0="$(date +%s)"
_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
declare -a STAGE_NAMES=() STAGE_RESULTS=() STAGE_TIMES=() STAGE_CHANGED=()

die() {
  printf '\nERROR: %s\n' "$*" >&2
  exit 1
}

_STEP_LOG="${HAILO_LAB_LOG:-${TMPDIR:-/tmp}/hailo-lab-setup.log}"

# Called by a set-up step that found nothing to do (run_steps gives each step its mark file).
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

# A dot every 20 s on the terminal while a quiet step runs longer than that.
_progress() {
  local pid="$1"
  while kill -0 "$pid" 2>/dev/null; do
    # Not on the terminal's (or a pipe's) descriptors: when the ticker is killed, this sleep
    # lives on for up to 20 s and would keep a `| tee` waiting.
    sleep 20 >/dev/null 2>&1
    kill -0 "$pid" 2>/dev/null && printf '.'
  done
}

# run_step NAME DESCRIPTION: runs step_NAME unless NAME is in HAILO_LAB_SKIP.
run_step() { run_steps "$1" "$2"; }

# run_steps NAME DESC [NAME DESC ...]: each step_NAME in the background with a log of its own
# (appended to the set-up log when it ends); a line per step in the order given, its time counted
# from the start of them all, "cached" when it found nothing to do. A failed step shows its log's
# tail and stops the others and the script. Both waits are guarded: under set -e a failed step
# (or the ticker's SIGTERM, 143) would end the script before it reports.
run_steps() {
  local dir t0 i rc pid ticker
  local -a names=() descs=() step_pids=()
  dir="$(mktemp -d "${TMPDIR:-/tmp}/hailo-lab-steps.XXXXXX")"
  t0="$(date +%s)"
  while [ "$#" -gt 1 ]; do names+=("$1"); descs+=("$2"); shift 2; done
  for i in "${!names[@]}"; do
    if [[ " ${HAILO_LAB_SKIP:-} " == *" ${names[$i]} "* ]]; then step_pids+=(""); continue; fi
    # The subshell's own mark file: `cached` writes to whatever _STEP_MARK names there.
    ( _STEP_MARK="$dir/$i.mark"; : >"$_STEP_MARK"; "step_${names[$i]}"; date +%s >"$dir/$i.end" ) \
      >"$dir/$i.log" 2>&1 &
    step_pids+=("$!")
  done
  for i in "${!names[@]}"; do
    _STEP_N=$((_STEP_N + 1))
    pid="${step_pids[$i]}"
    if [ -z "$pid" ]; then
      printf '[%2d] %-62s skipped\n' "$_STEP_N" "${descs[$i]}"
      continue
    fi
    printf '[%2d] %-62s ' "$_STEP_N" "${descs[$i]}"
    _progress "$pid" &
    ticker=$!
    rc=0
    wait "$pid" || rc=$?
    kill "$ticker" 2>/dev/null || true
    wait "$ticker" 2>/dev/null || true
    { echo "=== step ${names[$i]}"; cat "$dir/$i.log"; } >>"$_STEP_LOG"
    if [ "$rc" -ne 0 ]; then
      echo "FAILED"
      for pid in "${step_pids[@]}"; do
        if [ -n "$pid" ]; then pkill -P "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; fi
      done
      tail -n 25 "$dir/$i.log" >&2
      rm -rf "$dir"
      die "step '${names[$i]}' failed (full log: $_STEP_LOG)"
    fi
    if [ -s "$dir/$i.mark" ]; then
      _STEP_CACHED=$((_STEP_CACHED + 1))
      echo "cached"
    else
      echo "done ($(($(cat "$dir/$i.end") - t0))s)"
    fi
  done
  rm -rf "$dir"
}

summary() {
  echo "set-up: $_STEP_N steps, $_STEP_CACHED cached, $(($(date +%s) - _STEP_T0))s"
}

# stage NAME CMD...: returns CMD's exit status. With STAGE_FAILURES set (a folder), a failed
# stage's report (pytest's failures and short summary, else its output's last lines) is kept there
# for stage_summary, which prints it again last: a long run's log may be cut in the middle, and
# the failure is then still on its last screen (test.sh).
stage() {
  local name="$1" t0 rc=0 log changed=null
  local -
  set -o pipefail # CMD's status, not tee's
  shift
  echo
  echo "=== $name"
  t0="$(date +%s)"
  if [ -n "${STAGE_LOGS:-}" ]; then
    mkdir -p "$STAGE_LOGS"
    log="$STAGE_LOGS/$(echo "$name" | tr -c 'a-zA-Z0-9\n' '-' | tr -s '-' | sed 's/-$//').log"
  else
    log="$(mktemp)"
  fi
  "$@" 2>&1 | tee "$log" || rc="${PIPESTATUS[0]}"
  if [ -n "${STAGE_LOGS:-}" ]; then changed="$(python3 "$_LIB_DIR/recap.py" "$log")"; fi
  if [ "$rc" -ne 0 ] && [ -n "${STAGE_FAILURES:-}" ]; then
    mkdir -p "$STAGE_FAILURES"
    { echo "--- $name: FAIL (exit $rc); the end of its output:"; _failure_lines "$log"; } \
      >"$STAGE_FAILURES/$(date +%s%N)"
  fi
  if [ -z "${STAGE_LOGS:-}" ]; then rm -f "$log"; fi
  STAGE_NAMES+=("$name")
  STAGE_TIMES+=("$(($(date +%s) - t0))")
  STAGE_CHANGED+=("$changed")
  if [ "$rc" -eq 0 ]; then STAGE_RESULTS+=("pass"); else STAGE_RESULTS+=("FAIL (exit $rc)"); fi
  return "$rc"
}

# _failure_lines LOG: pytest's report from its first FAILURES/ERRORS section, else the last lines;
# at most 60 lines either way.
_failure_lines() {
  local from
  from="$(grep -n -m1 -E '^=+ (FAILURES|ERRORS) =+$' "$1" | cut -d: -f1)"
  if [ -n "$from" ]; then tail -n "+$from" "$1" | tail -n 60; else tail -n 30 "$1"; fi
}

# stage_json [FROM]: the stages (from index FROM on) as JSON lines {"step", "seconds", "changed", "result"}.
stage_json() {
  local i
  for ((i = ${1:-0}; i < ${#STAGE_NAMES[@]}; i++)); do
    printf '{"step": "%s", "seconds": %s, "changed": %s, "result": "%s"}\n' \
      "${STAGE_NAMES[$i]}" "${STAGE_TIMES[$i]}" "${STAGE_CHANGED[$i]}" "${STAGE_RESULTS[$i]}"
  done
}

stage_summary() {
  local i failed=0 passed=0 f
  if [ -n "${STAGE_FAILURES:-}" ] && [ -n "$(ls -A "$STAGE_FAILURES" 2>/dev/null)" ]; then
    echo
    echo "=== failed stages, again"
    for f in "$STAGE_FAILURES"/*; do cat "$f"; done
  fi
  if [ -n "${STAGE_FAILURES:-}" ]; then rm -rf "$STAGE_FAILURES"; fi
  echo
  echo "=== summary"
  for i in "${!STAGE_NAMES[@]}"; do
    printf '  %-42s %-16s %5ss\n' "${STAGE_NAMES[$i]}" "${STAGE_RESULTS[$i]}" "${STAGE_TIMES[$i]}"
    if [ "${STAGE_RESULTS[$i]}" = "pass" ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  done
  echo "stages: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

# together FUNC...: each FUNC runs in the background with its output in a log of its own; the
# logs are printed whole, in the order the groups finish, and every stage they ran joins this
# shell's summary. Returns non-zero when any group failed.
together() {
  local dir f p pid rc=0 start="${#STAGE_NAMES[@]}" step seconds changed result
  local -A pids=()
  dir="$(mktemp -d "${TMPDIR:-/tmp}/hailo-stages.XXXXXX")"
  for f in "$@"; do
    ( "$f"; status=$?; stage_json "$start" >"$dir/$f.json"; echo "$status" >"$dir/$f.rc"; exit "$status" ) \
      >"$dir/$f.log" 2>&1 &
    pids[$!]="$f"
    echo "--- started: $f (its output follows when it ends)"
  done
  while [ "${#pids[@]}" -gt 0 ]; do
    pid=""
    wait -n -p pid "${!pids[@]}" 2>/dev/null
    if [ -z "$pid" ]; then
      # A group that ended while the previous one was printed may be gone from bash's job table
      # ("wait: PID: no such job"): take one that is no longer running.
      for p in "${!pids[@]}"; do if ! kill -0 "$p" 2>/dev/null; then pid="$p" && break; fi; done
      if [ -z "$pid" ]; then sleep 1 && continue; fi
    fi
    f="${pids[$pid]}"
    unset "pids[$pid]"
    # Its status as it wrote it (a group the job table lost has no status from wait).
    [ "$(cat "$dir/$f.rc" 2>/dev/null)" = 0 ] || rc=1
    echo
    echo "=============== $f (finished) ==============="
    cat "$dir/$f.log"
    while IFS=$'\t' read -r step seconds changed result; do
      STAGE_NAMES+=("$step") STAGE_TIMES+=("$seconds") STAGE_CHANGED+=("$changed") STAGE_RESULTS+=("$result")
    done < <(python3 -c 'import json, sys
for line in sys.stdin:
    s = json.loads(line)
    print("\t".join([s["step"], str(s["seconds"]), json.dumps(s["changed"]), s["result"]]))' <"$dir/$f.json")
  done
  rm -rf "$dir"
  return "$rc"
}
