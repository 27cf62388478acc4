#!/bin/sh
# install-hailort SRC VERSION ARCH SITE PREFIX: installs HailoRT from the files a user supplied,
# for the image's platform ARCH (Docker's name: arm64), on the build platform.
# SRC holds hailort-X.Y.Z-cp311-cp311-linux_aarch64.whl (the Python binding, hailo_platform) and
# hailort_X.Y.Z_arm64.deb (libhailort + hailortcli). Both must be exactly VERSION: the binding
# links against libhailort of its own version, and the Pi's hailo_pci driver must match that too.
# The binding goes into SITE (site-packages, with its dependencies), the library and CLI into
# PREFIX/lib and PREFIX/bin. An empty VERSION with no files installs nothing (stub and onnx modes).
set -eu

die() {
  echo "install-hailort: $*" >&2
  exit 1
}

src="$1" want="$2" arch="$3" site="$4" prefix="$5"
mkdir -p "$prefix/lib" "$prefix/bin"
whls="$(find "$src" -maxdepth 1 -name 'hailort-*.whl' | sort)"
debs="$(find "$src" -maxdepth 1 -name 'hailort_*.deb' | sort)"

if [ -z "$want" ]; then
  [ -z "$whls$debs" ] || die "HailoRT files were given but HAILORT_VERSION is empty: pass --build-arg HAILORT_VERSION=X.Y.Z"
  echo none >"$prefix/VERSION"
  echo "HailoRT: none (this image serves stub and onnx modes)"
  exit 0
fi

[ -n "$whls" ] || die "HAILORT_VERSION=$want but no hailort-$want-*.whl in the hailort build context"
[ -n "$debs" ] || die "HAILORT_VERSION=$want but no hailort_${want}_*.deb in the hailort build context"
[ "$(echo "$whls" | wc -l)" -eq 1 ] || die "more than one hailort wheel in the build context: $whls"
[ "$(echo "$debs" | wc -l)" -eq 1 ] || die "more than one hailort .deb in the build context: $debs"

whl_version="$(basename "$whls" | cut -d- -f2)"
deb_version="$(dpkg-deb -f "$debs" Version | sed 's/-[^-]*$//')"
deb_arch="$(dpkg-deb -f "$debs" Architecture)"
[ "$whl_version" = "$want" ] || die "wheel $(basename "$whls") is HailoRT $whl_version, HAILORT_VERSION is $want"
[ "$deb_version" = "$want" ] || die "$(basename "$debs") is HailoRT $deb_version, HAILORT_VERSION is $want"
[ "$deb_arch" = "$arch" ] || die "$(basename "$debs") is for $deb_arch, this image is $arch"

# The binding's own dependencies come along, at the project's pinned versions where it shares them.
PIP_CONSTRAINT=/src/requirements/constraints.txt target-pip "$arch" "$site" "$whls"
tmp="$(mktemp -d)"
dpkg-deb -x "$debs" "$tmp"
libs="$(find "$tmp" -name 'libhailort.so*')"
[ -n "$libs" ] || die "$(basename "$debs") holds no libhailort.so"
for f in $libs; do cp -a "$f" "$prefix/lib/"; done
if [ -x "$tmp/usr/bin/hailortcli" ]; then cp -a "$tmp/usr/bin/hailortcli" "$prefix/bin/"; fi
rm -rf "$tmp"
echo "$want" >"$prefix/VERSION"
echo "HailoRT: $want (binding and libhailort)"
