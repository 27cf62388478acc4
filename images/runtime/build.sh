#!/usr/bin/env bash
# The one build path of the runtime image (linux/arm64, the Raspberry Pi 5): `make images`, the
# sidecar_image role (on GPUSrv, from the context it copied there) and the release workflow run
# this script. It builds images/runtime/Dockerfile with buildx, pushes it as REGISTRY/IMAGE:VERSION
# and REGISTRY/IMAGE:git-<revision>, and writes a JSON record (image, digest, revision, size).
# When the registry already holds VERSION built from this revision, nothing is built.
#
# Settings (environment):
#   REGISTRY          registry host[:port]                      required
#   IMAGE_NAME        repository                                default hailo/sidecar
#   VERSION           tag                                       default: pyproject.toml's version
#   REVISION          the source's git revision                 default: git rev-parse HEAD, with
#                     "-dirty-<hash of the changes>" when the image's sources have uncommitted
#                     changes (so each change builds again; the git tag gets "-dirty")
#   CREATED           created label                             default: the revision's commit time
#   PLATFORM          target platform                           default linux/arm64
#   BASE              base image                                default $REGISTRY/library/debian:bookworm-slim
#   BUILDER           buildx builder, or a Docker context       default "default"
#   CACHE_FROM        images to take layers from (space-separated refs)   default none
#   BUILD_CA          extra CA bundle for pip (a BuildKit secret, never a layer)   default none
#   HAILORT_DIR       folder with Hailo's hailort wheel and .deb (optional; needs HAILORT_VERSION)
#   HAILORT_VERSION   their HailoRT version, e.g. 4.23.0 (the tag becomes VERSION-hailortX.Y.Z)
#   OUT               the record                                default build/sidecar-image.json
#   FORCE             1: build even when the pushed image is current
#   PRINT_REVISION    1: print the revision this checkout builds as, nothing else (the role's default)
#   CHECK             1: build nothing; say whether a build is due ("would build"), and when the
#                     pushed image is current, write its record as usual (Ansible's check mode)
set -euo pipefail

CONTEXT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$CONTEXT"

die() {
  echo "build: $*" >&2
  exit 2
}

if [ -z "${REVISION:-}" ] && git rev-parse HEAD >/dev/null 2>&1; then
  REVISION="$(git rev-parse HEAD)"
  # The image's sources: the `!` lines of its Dockerfile.dockerignore.
  mapfile -t sources < <(sed -n 's/^!//p' images/runtime/Dockerfile.dockerignore)
  if [ -n "$(git status --porcelain -- "${sources[@]}")" ]; then
    changes="$( { git diff HEAD -- "${sources[@]}"
      git ls-files --others --exclude-standard -- "${sources[@]}" | xargs -r sha256sum; } | sha256sum | cut -c1-12)"
    REVISION="$REVISION-dirty-$changes"
  fi
fi
if [ "${PRINT_REVISION:-0}" = 1 ]; then
  echo "${REVISION:-}"
  exit 0
fi
[ -n "${REGISTRY:-}" ] || die "REGISTRY is required (host[:port] of the registry to push to)"
IMAGE_NAME="${IMAGE_NAME:-hailo/sidecar}"
VERSION="${VERSION:-$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')}"
[ -n "${REVISION:-}" ] || die "REVISION is required outside a git checkout (the source's git revision)"
CREATED="${CREATED:-$(git log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)}"
PLATFORM="${PLATFORM:-linux/arm64}"
BASE="${BASE:-$REGISTRY/library/debian:bookworm-slim}"
BUILDER="${BUILDER:-default}"
HAILORT_DIR="${HAILORT_DIR:-}"
HAILORT_VERSION="${HAILORT_VERSION:-}"
OUT="${OUT:-$CONTEXT/build/sidecar-image.json}"

repo="$REGISTRY/$IMAGE_NAME"
tag="$VERSION${HAILORT_VERSION:+-hailort$HAILORT_VERSION}"
image="$repo:$tag"
git_tag="$repo:git-${REVISION:0:12}"
case "$REVISION" in *-dirty-*) git_tag="$git_tag-dirty" ;; esac

args=(--platform "$PLATFORM" --file images/runtime/Dockerfile
  --build-arg "BASE=$BASE" --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION"
  --build-arg "CREATED=$CREATED" --tag "$image" --tag "$git_tag" --push
  # One image manifest, no attestation index: the Pis pull it by digest.
  --provenance=false
  # Inline cache metadata: later builds of the same revision elsewhere (the lab's GPUSrv, CI
  # builders) take its layers instead of rebuilding them.
  --cache-to type=inline --cache-from "type=registry,ref=$image")
for ref in ${CACHE_FROM:-}; do args+=(--cache-from "type=registry,ref=$ref"); done
if [ -n "${BUILD_CA:-}" ]; then
  [ -r "$BUILD_CA" ] || die "BUILD_CA=$BUILD_CA is not a readable file"
  args+=(--secret "id=ca,src=$BUILD_CA")
fi
if [ -n "$HAILORT_DIR$HAILORT_VERSION" ]; then
  [ -d "$HAILORT_DIR" ] || die "HAILORT_DIR=$HAILORT_DIR is not a folder (it must hold the hailort wheel and .deb)"
  [ -n "$HAILORT_VERSION" ] || die "HAILORT_DIR is set: set HAILORT_VERSION (e.g. 4.23.0) too"
  args+=(--build-context "hailort=$HAILORT_DIR" --build-arg "HAILORT_VERSION=$HAILORT_VERSION")
fi

docker info >/dev/null 2>&1 || die "no Docker daemon (make setup starts one in the lab)"
# A docker-driver builder is a Docker context; any other driver is a buildx builder.
if docker context inspect "$BUILDER" >/dev/null 2>&1; then
  buildx=(docker --context "$BUILDER" buildx build)
else
  buildx=(docker buildx build --builder "$BUILDER")
fi

pushed_revision() {
  docker buildx imagetools inspect "$image" --format '{{ json .Image }}' 2>/dev/null \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["config"]["Labels"].get("org.opencontainers.image.revision", ""))' \
      2>/dev/null || true
}

# The record names what is current, not whether this run built it (the output says that): a run
# that builds nothing writes the same record, so the roles' copies of it stay unchanged.
if [ "${FORCE:-0}" != 1 ] && [ "$(pushed_revision)" = "$REVISION" ]; then
  echo "build: $image is current (revision ${REVISION:0:12}): nothing built"
elif [ "${CHECK:-0}" = 1 ]; then
  echo "build: would build $image ($PLATFORM) from revision ${REVISION:0:12}"
  exit 0
else
  arch="${PLATFORM#linux/}"
  if [ "$arch" != "$(dpkg --print-architecture 2>/dev/null || uname -m)" ]; then
    # binfmt is global and other containers can clear it: check before a foreign build.
    [ "$(docker run --rm --platform "$PLATFORM" "$BASE" uname -m 2>/dev/null)" = "$(
      case "$arch" in arm64) echo aarch64 ;; *) echo "$arch" ;; esac)" ] ||
      die "$PLATFORM containers do not run here (QEMU binfmt missing? buildx_qemu registers it; in the lab: make setup)"
  fi
  echo "build: $image ($PLATFORM) from revision ${REVISION:0:12}"
  t0="$(date +%s)"
  # --progress plain: one line per step, so a long build shows where it is.
  "${buildx[@]}" --progress plain "${args[@]}" . 2>&1 | grep -v -E 'failed to configure registry cache importer'
  echo "build: pushed $image and $git_tag in $(($(date +%s) - t0)) s"
fi

manifest="$(docker buildx imagetools inspect --raw "$image")"
digest="$(docker buildx imagetools inspect "$image" --format '{{ json .Manifest.Digest }}' | tr -d '"')"
git_digest="$(docker buildx imagetools inspect "$git_tag" --format '{{ json .Manifest.Digest }}' 2>/dev/null | tr -d '"')"
if [ "$git_digest" != "$digest" ]; then
  # The version tag was current but the revision tag missing (pushed by another path): tag it.
  docker buildx imagetools create --tag "$git_tag" "$image" >/dev/null
fi
mkdir -p "$(dirname "$OUT")"
MANIFEST="$manifest" python3 - "$OUT" <<PY
import json, os, sys
m = json.loads(os.environ["MANIFEST"])
if "manifests" in m:  # an index (another builder): the platform's entry
    sys.exit("build: $image is a multi-platform index; this image is built for $PLATFORM only")
record = {
    "image": "$image", "git_tag": "$git_tag", "digest": "$digest", "ref": "$repo@$digest",
    "platform": "$PLATFORM", "revision": "$REVISION", "version": "$VERSION",
    "hailort": "${HAILORT_VERSION:-none}",
    "compressed_size": sum(layer["size"] for layer in m["layers"]),
}
with open(sys.argv[1], "w") as f:
    json.dump(record, f, indent=2)
    f.write("\n")
print(f"build: {record['ref']} ({record['compressed_size'] // 1000000} MB compressed); record in {sys.argv[1]}")
PY
