#!/bin/sh
# target-pip ARCH DEST PIP-ARGS...: installs for the image's platform (ARCH as Docker names it,
# TARGETARCH) and its CPython into DEST, from wheels only, whatever the build platform is: the
# interpreter's minor version is the build stage's own (the same Debian suite as the image).
set -eu

arch="$1" dest="$2"
shift 2
case "$arch" in
  arm64) machine=aarch64 ;;
  amd64) machine=x86_64 ;;
  *) echo "target-pip: unsupported architecture $arch" >&2; exit 1 ;;
esac
py="$(/opt/build/bin/python -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
# pip takes --platform literally (no older manylinux levels implied): list every glibc level from
# manylinux2014's 2.17 up to the build stage's own (the same Debian suite as the image's).
glibc_minor="$(/opt/build/bin/python -c 'import os; print(os.confstr("CS_GNU_LIBC_VERSION").split()[1].split(".")[1])')"
platforms=""
minor=17
while [ "$minor" -le "$glibc_minor" ]; do
  platforms="$platforms --platform manylinux_2_${minor}_$machine"
  minor=$((minor + 1))
done
# Into a fresh folder, then merged into DEST: pip --target replaces DEST's bin/ (and any shared
# folder) wholesale, which would drop the console scripts an earlier call installed. A package
# DEST already has must be the same version (the constraints pin both calls).
tmp="$(mktemp -d)"
# shellcheck disable=SC2086 # $platforms is a list of options
/opt/build/bin/pip install -q --target "$tmp" --only-binary=:all: \
  --implementation cp --python-version "$py" --abi "cp$py" \
  $platforms --platform "manylinux2014_$machine" --platform "linux_$machine" "$@"
mkdir -p "$dest"
for info in "$tmp"/*.dist-info; do
  [ -e "$info" ] || continue
  name="$(basename "$info" | sed 's/-[^-]*\.dist-info$//')"
  for have in "$dest/$name"-*.dist-info; do
    if [ -e "$have" ] && [ "$(basename "$have")" != "$(basename "$info")" ]; then
      echo "target-pip: $(basename "$info") would replace $(basename "$have") in $dest" >&2
      exit 1
    fi
  done
done
tar -C "$tmp" -cf - . | tar -C "$dest" -xf - --skip-old-files
rm -rf "$tmp"
