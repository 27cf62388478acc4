#!/bin/bash
# Stand-in for the runner's config.sh (lab only): records the registration, contacts nothing.
set -euo pipefail
cd "$(dirname "$0")"
token="${ACTIONS_RUNNER_INPUT_TOKEN:-}"
[ -n "$token" ] || { echo "stand-in config.sh: no registration token in ACTIONS_RUNNER_INPUT_TOKEN" >&2; exit 1; }
for arg in "$@"; do
  [ "$arg" != "$token" ] || { echo "stand-in config.sh: the token was passed on the command line" >&2; exit 1; }
done
token_sha="$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)"
if [ "${1:-}" = remove ]; then
  [ -f .runner ] || { echo "stand-in config.sh: not configured" >&2; exit 1; }
  rm -f .runner .credentials
  echo "stand-in: runner removed (token sha256 $token_sha)" >>standin-calls.log
  exit 0
fi
url="" name="" labels="" work="" group="" unattended=0
while [ $# -gt 0 ]; do
  case "$1" in
    --unattended) unattended=1 ;;
    --replace) ;;
    --url) url="$2"; shift ;;
    --name) name="$2"; shift ;;
    --labels) labels="$2"; shift ;;
    --work) work="$2"; shift ;;
    --runnergroup) group="$2"; shift ;;
    *) echo "stand-in config.sh: unknown argument $1" >&2; exit 1 ;;
  esac
  shift
done
[ "$unattended" = 1 ] && [ -n "$url" ] && [ -n "$name" ] && [ -n "$work" ] ||
  { echo "stand-in config.sh: --unattended, --url, --name and --work are required" >&2; exit 1; }
[ "$(id -u)" != 0 ] || { echo "Must not run with sudo" >&2; exit 1; }
printf '{"standin": true, "agentName": "%s", "gitHubUrl": "%s", "labels": "%s", "runnerGroup": "%s", "workFolder": "%s", "token_sha256": "%s"}\n' \
  "$name" "$url" "$labels" "$group" "$work" "$token_sha" >.runner
echo "stand-in: configured $name for $url with labels $labels" >>standin-calls.log
