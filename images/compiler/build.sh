#!/usr/bin/env bash
# The one build path of the compiler image (linux/amd64, on GPUSrv): the hef_compile role, the
# release workflow and the image tests run this script. The DFC wheel is the user's: it comes in
# through the `dfc` build context (a folder holding exactly one hailo_dataflow_compiler-*.whl)
# and never lands in a layer. The image is tagged IMAGE_NAME:<DFC version>-<hash[:12]>, the hash
# over the wheel and the sources the image is built from (SOURCES below; its build context is
# listed once, in images/compiler/Dockerfile.dockerignore): a new wheel or changed compiler
# sources (a collection upgrade) build again; an image of that tag already present is not built
# again.
#
# Usage: images/compiler/build.sh DFC_DIR
# Settings (environment):
#   IMAGE_NAME   image name                             default hailo-compiler
#   BASE         base image                             default debian:bookworm-slim
#   APT_PACKAGES system packages the DFC needs          default "python3-dev graphviz libgraphviz-dev build-essential"
#   BUILD_CA     extra CA bundle for pip (a BuildKit secret, never a layer)   default none
#   BUILDER      buildx builder with the docker driver  default "default" (the image is loaded)
#   CHECK        1: build nothing, say "would build" when a build is due (Ansible's check mode)
# Prints the image reference on its last line.
set -euo pipefail

CONTEXT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$CONTEXT"

die() {
  echo "compiler build: $*" >&2
  exit 2
}

dfc_dir="${1:-}"
[ -d "$dfc_dir" ] || die "usage: $0 DFC_DIR (a folder holding one hailo_dataflow_compiler-*.whl)"
mapfile -t wheels < <(find "$dfc_dir" -maxdepth 1 -name 'hailo_dataflow_compiler-*.whl' | sort)
[ "${#wheels[@]}" -eq 1 ] || die "$dfc_dir must hold exactly one hailo_dataflow_compiler-*.whl (found ${#wheels[@]})"
wheel="${wheels[0]}"
dfc_version="$(basename "$wheel" | cut -d- -f2)"
# What the image is built from: the `!` lines of its Dockerfile.dockerignore (compiled files
# excluded: a checkout may hold them, the role's build context does not).
mapfile -t SOURCES < <(sed -n 's/^!//p' images/compiler/Dockerfile.dockerignore)
digest="$({
  sha256sum "$wheel" | cut -d' ' -f1
  find "${SOURCES[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
} | sha256sum | cut -c1-12)"
image="${IMAGE_NAME:-hailo-compiler}:$dfc_version-$digest"

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "compiler build: $image is present: nothing built"
elif [ "${CHECK:-0}" = 1 ]; then
  echo "compiler build: would build $image"
else
  args=(--builder "${BUILDER:-default}" --platform linux/amd64 --load --progress plain
    --file images/compiler/Dockerfile --build-context "dfc=$dfc_dir"
    --build-arg "BASE=${BASE:-debian:bookworm-slim}"
    --build-arg "DFC_APT_PACKAGES=${APT_PACKAGES-python3-dev graphviz libgraphviz-dev build-essential}"
    --tag "$image")
  if [ -n "${BUILD_CA:-}" ]; then
    [ -r "$BUILD_CA" ] || die "BUILD_CA=$BUILD_CA is not a readable file"
    args+=(--secret "id=ca,src=$BUILD_CA")
  fi
  docker buildx build "${args[@]}" .
  echo "compiler build: built $image"
fi
echo "$image"
