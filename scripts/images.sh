#!/usr/bin/env bash
# Builds the runtime image for each platform, pushes it to the registry and assembles the
# multi-arch manifest list (`make images`). Writes build/images.json: the references, digests
# and sizes that the image tests and the Compose checks read.
#
# Settings (environment):
#   REGISTRY          where images go                  default 127.0.0.1:5000 (the lab registry)
#   IMAGE_NAME        repository in the registry       default hailo/sidecar
#   PLATFORMS         platforms to build               default "linux/amd64 linux/arm64"
#   BASE              base image (manifest list)        default $REGISTRY/library/debian:bookworm-slim
#   BUILD_CA          extra CA bundle, a BuildKit secret default /etc/ssl/certs/ca-certificates.crt if present
#   HAILORT_DIR       folder with the hailort wheel and .deb (optional; needs HAILORT_VERSION)
#   HAILORT_VERSION   the HailoRT version in HAILORT_DIR, e.g. 4.23.0
#   OUT               where the summary goes           default build/images.json
#   BUILDER           buildx builder                   default "default" (the daemon's BuildKit;
#                     another driver pushes without loading: sizes are then left out)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

REGISTRY="${REGISTRY:-127.0.0.1:5000}"
IMAGE_NAME="${IMAGE_NAME:-hailo/sidecar}"
PLATFORMS="${PLATFORMS:-linux/amd64 linux/arm64}"
BASE="${BASE:-$REGISTRY/library/debian:bookworm-slim}"
BUILD_CA="${BUILD_CA-/etc/ssl/certs/ca-certificates.crt}"
HAILORT_DIR="${HAILORT_DIR:-}"
HAILORT_VERSION="${HAILORT_VERSION:-}"
OUT="${OUT:-$ROOT/build/images.json}"
BUILDER="${BUILDER:-default}"

die() {
  echo "images: $*" >&2
  exit 1
}

version="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
# The commit time, not the wall clock: rebuilding a commit gives the same labels.
created="$(git log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)"
repo="$REGISTRY/$IMAGE_NAME"
tag="$version"
[ -z "$HAILORT_VERSION" ] || tag="$version-hailort$HAILORT_VERSION"

args=(--build-arg "BASE=$BASE" --build-arg "VERSION=$version" --build-arg "REVISION=$revision"
  --build-arg "CREATED=$created" --file images/runtime/Dockerfile)
if [ -n "$BUILD_CA" ]; then
  [ -r "$BUILD_CA" ] || die "BUILD_CA=$BUILD_CA is not a readable file"
  args+=(--secret "id=ca,src=$BUILD_CA")
fi
if [ -n "$HAILORT_DIR$HAILORT_VERSION" ]; then
  [ -d "$HAILORT_DIR" ] || die "HAILORT_DIR=$HAILORT_DIR is not a folder (it must hold the hailort wheel and .deb)"
  [ -n "$HAILORT_VERSION" ] || die "HAILORT_DIR is set: set HAILORT_VERSION (e.g. 4.23.0) too"
  args+=(--build-context "hailort=$HAILORT_DIR" --build-arg "HAILORT_VERSION=$HAILORT_VERSION")
fi

docker info >/dev/null 2>&1 || die "no Docker daemon: run 'make setup' first"
refs=()
json_platforms=""
for platform in $PLATFORMS; do
  arch="${platform#linux/}"
  if [ "$arch" != "$(dpkg --print-architecture)" ]; then
    # binfmt is global and other containers can clear it: check before every foreign build.
    [ "$(docker run --rm --platform "$platform" "$BASE" uname -m 2>/dev/null)" = aarch64 ] ||
      die "$platform containers do not run here (QEMU binfmt missing?): run 'make setup'"
  fi
  ref="$repo:$tag-$arch"
  echo "--- build $ref ($platform)"
  t0="$(date +%s)"
  # Inline cache metadata in the pushed image: later builds of the same revision elsewhere (the
  # lab's GPUSrv, CI builders) take its layers instead of rebuilding them (sidecar_image_cache_from).
  docker buildx build --builder "$BUILDER" --platform "$platform" "${args[@]}" --tag "$ref" --push \
    --cache-to type=inline --cache-from "type=registry,ref=$ref" .
  size="$(docker image inspect -f '{{.Size}}' "$ref" 2>/dev/null || echo 0)"
  digest="$(docker buildx imagetools inspect "$ref" --format '{{json .Manifest.Digest}}' | tr -d '"')"
  printf '    %s: %s MB uncompressed, %ss, %s\n' "$platform" "$((size / 1000000))" "$(($(date +%s) - t0))" "$digest"
  refs+=("$ref")
  json_platforms+="${json_platforms:+,}\"$platform\": {\"ref\": \"$ref\", \"digest\": \"$digest\", \"size\": $size}"
done

echo "--- manifest list $repo:$tag"
docker buildx imagetools create --tag "$repo:$tag" "${refs[@]}"
docker buildx imagetools inspect "$repo:$tag"

mkdir -p "$(dirname "$OUT")"
printf '{"list": "%s", "version": "%s", "revision": "%s", "hailort": "%s", "platforms": {%s}}\n' \
  "$repo:$tag" "$version" "$revision" "${HAILORT_VERSION:-none}" "$json_platforms" >"$OUT"
echo "images: wrote $OUT"
