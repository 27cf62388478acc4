#!/bin/bash
# Stand-in for the runner's run.sh (lab only): stays up like the listener, runs no jobs.
cd "$(dirname "$0")" || exit 1
[ -f .runner ] || { echo "stand-in run.sh: not configured (run config.sh)" >&2; exit 1; }
echo "stand-in runner listening as $(id -un): $(cat .runner)"
exec sleep infinity
