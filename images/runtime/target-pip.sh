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
glibc="$(/opt/build/bin/python -c 'import os; print(os.confstr("CS_GNU_LIBC_VERSION").split()[1].replace(".", "_"))')"
# --upgrade: a later call replaces what an earlier one put in DEST/bin (pip skips it otherwise).
exec /opt/build/bin/pip install -q --target "$dest" --upgrade --only-binary=:all: \
  --implementation cp --python-version "$py" --abi "cp$py" \
  --platform "manylinux_${glibc}_$machine" --platform "manylinux2014_$machine" --platform "linux_$machine" "$@"
