#!/usr/bin/env bash
# The one way to run the compiler image (hailo-compile), as build.sh is the one way to build it:
# the hef_compile role, the release workflow and the image tests run this script. The container
# gets no network, no capabilities, no new privileges and a read-only root with a /tmp tmpfs;
# IN_DIR is mounted read-only at /in and OUT_DIR, the only place it writes, at /out. IMAGE must be
# on this host already (build.sh's): docker never pulls a same-named image from a registry.
#
# Usage: images/compiler/run.sh IMAGE IN_DIR OUT_DIR [hailo-compile arguments...]
#   e.g. run.sh hailo-compiler:3.33.0-0123456789ab model/ releases/ --onnx /in/model.onnx
#        --calib /in/calib.npy --model-name imu-encoder --version 1.4.0 --config-version 2026-11-a --out /out
# Settings (environment):
#   RUN_USER   uid:gid the compiler runs as (it must own OUT_DIR; not root)   default: the image's (10001:10001)
# Exits with hailo-compile's status (2: bad arguments; see hef_compiler/README.md).
set -euo pipefail

die() {
  echo "compiler run: $*" >&2
  exit 2
}

[ "$#" -ge 3 ] || die "usage: $0 IMAGE IN_DIR OUT_DIR [hailo-compile arguments...]"
image="$1" in_dir="$2" out_dir="$3"
shift 3
[ -n "$image" ] || die "IMAGE is empty"
# docker would take it as an option (--privileged, -v=...) and the next argument as the image.
[[ "$image" != -* ]] || die "IMAGE $image starts with '-'"
[ -d "$in_dir" ] || die "IN_DIR $in_dir is not a folder"
[ -d "$out_dir" ] || die "OUT_DIR $out_dir is not a folder"
# Bind mounts need absolute paths; a relative one would be taken as a volume's name.
in_dir="$(cd "$in_dir" && pwd)" out_dir="$(cd "$out_dir" && pwd)"

args=(--pull never --rm --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges --network none)
if [ -n "${RUN_USER:-}" ]; then
  [[ "$RUN_USER" =~ ^[0-9]+:[0-9]+$ ]] || die "RUN_USER=$RUN_USER is not uid:gid"
  ((10#${RUN_USER%%:*} != 0 && 10#${RUN_USER#*:} != 0)) || die "RUN_USER=$RUN_USER is root's uid or gid"
  args+=(--user "$RUN_USER")
fi
exec docker run "${args[@]}" -v "$in_dir:/in:ro" -v "$out_dir:/out" "$image" "$@"
