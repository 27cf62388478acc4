#!/usr/bin/env bash
# Prepares this machine for the hailo-pipeline lab and tests, from nothing, idempotently:
# Python venv, Docker engine + buildx + compose v2, QEMU binfmt for arm64, debootstrap, a local
# registry on 127.0.0.1:5000, Debian base images (amd64 + arm64) and systemd host images for
# the lab and Molecule. Every step checks first and says "cached" when there is nothing to do.
#
# Works on Debian 12 (Docker from trixie, pinned low), Debian 13 and Ubuntu 22.04/24.04 (distro
# packages). Uses a Docker engine or registry that is already running.
#
# Environment:
#   HAILO_LAB_STATE   state/log folder (default /var/lib/hailo-lab)
#   HAILO_LAB_MIRROR  Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   HAILO_LAB_SKIP    space-separated step names to skip (e.g. "image_bookworm_arm64 base_in_registry")
#   HAILO_LAB_SUBNET  the lab network's subnet (default 10.213.0.0/24)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${HAILO_LAB_STATE:-/var/lib/hailo-lab}"
MIRROR="${HAILO_LAB_MIRROR:-http://deb.debian.org/debian}"
REGISTRY="127.0.0.1:5000"
LAB_NETWORK=hailo-lab
LAB_SUBNET="${HAILO_LAB_SUBNET:-10.213.0.0/24}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# -- the step runner: one line per step with its time, "cached" when it found nothing to do ----
_STEP_N=0
_STEP_CACHED=0
_STEP_T0="$(date +%s)"

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

# -- the steps ----------------------------------------------------------------------------------

. /etc/os-release
OS_ID="${ID}"
OS_CODENAME="${VERSION_CODENAME:-}"

apt_missing() {
  # Prints the packages among "$@" that are not installed.
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"
  done
}

step_host_packages() {
  local missing
  # prometheus, prometheus-alertmanager: promtool checks and unit-tests the monitoring role's rules,
  # amtool its Alertmanager configuration, and the unit tests run an Alertmanager of their own.
  missing="$(apt_missing debootstrap python3-venv ca-certificates curl git make xz-utils socat prometheus \
    prometheus-alertmanager)"
  if [ -z "$missing" ]; then cached; return; fi
  $SUDO apt-get update -q
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
  # Debian starts the services it installs where systemd runs: this machine only needs their tools.
  if [ -d /run/systemd/system ]; then
    for p in prometheus prometheus-alertmanager; do
      if [[ " $missing " == *" $p "* ]]; then $SUDO systemctl disable --now "$p" || true; fi
    done
  fi
}

docker_ready_tools() {
  command -v dockerd >/dev/null && docker buildx version >/dev/null 2>&1 \
    && docker compose version >/dev/null 2>&1 && command -v qemu-aarch64-static >/dev/null \
    && { command -v docker-registry >/dev/null || curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1; }
}

step_docker_packages() {
  if docker_ready_tools; then cached; return; fi
  local pkgs target="" trixie=/etc/apt/sources.list.d/hailo-lab-trixie.sources
  case "$OS_ID:$OS_CODENAME" in
    debian:*)
      pkgs="docker.io docker-cli docker-buildx docker-compose qemu-user-static"
      # Where the machine's sources have no docker-buildx (bookworm: docker.io is 20.10, without
      # buildx or compose v2), Docker comes from trixie, pinned at priority 100 so nothing else
      # moves to trixie. Asked of apt, not of os-release: a bookworm machine that took packages
      # from trixie may say it is trixie while its sources are still bookworm's.
      $SUDO apt-get update -q
      if [ -f "$trixie" ] || ! apt-cache policy docker-buildx | grep -q 'Candidate: [0-9]'; then
        $SUDO tee "$trixie" >/dev/null <<SRC
Types: deb
URIs: ${MIRROR}
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
        $SUDO tee /etc/apt/preferences.d/hailo-lab-trixie >/dev/null <<PIN
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
        $SUDO apt-get update -q
        target="-t trixie"
      fi
      ;;
    ubuntu:*) pkgs="docker.io docker-buildx docker-compose-v2 qemu-user-static" ;;
    *) die "unsupported OS $OS_ID $OS_CODENAME (Debian 12/13 or Ubuntu 22.04/24.04 expected)" ;;
  esac
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $target $pkgs
  if ! curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends docker-registry
    # The package starts its own service with htpasswd auth where systemd runs: the lab serves
    # its own configuration instead.
    if [ -d /run/systemd/system ]; then $SUDO systemctl disable --now docker-registry || true; fi
  fi
}

step_binfmt() {
  local entry=/proc/sys/fs/binfmt_misc/qemu-aarch64 conf=/usr/lib/binfmt.d/qemu-aarch64.conf
  local qemu stamp="$STATE/binfmt.stamp" current
  if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  [ -f "$conf" ] || die "$conf missing: qemu-user-static did not install its binfmt entry"
  qemu="$(awk -F: '{print $7}' "$conf")"
  current="$(stat -Lc '%i %Y' "$qemu")"
  # The F flag keeps the interpreter file that was open at registration: re-register after QEMU
  # was installed or upgraded, or when another container cleared the registration.
  if [ -e "$entry" ] && grep -q '^enabled' "$entry" && [ -f "$stamp" ] \
     && [ "$(cat "$stamp")" = "$current" ]; then
    cached; return
  fi
  if [ -e "$entry" ]; then echo -1 | $SUDO tee "$entry" >/dev/null; fi
  $SUDO tee /proc/sys/fs/binfmt_misc/register <"$conf" >/dev/null
  echo "$current" | $SUDO tee "$stamp" >/dev/null
}

step_dockerd() {
  if docker info >/dev/null 2>&1; then cached; return; fi
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl enable --now docker
  else
    # No init system runs services here: start dockerd in the background, detached.
    $SUDO mkdir -p "$STATE"
    $SUDO setsid nohup dockerd >"$STATE/dockerd.log" 2>&1 </dev/null &
  fi
  wait_for "Docker engine" 90 docker info
}

step_registry() {
  if curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1; then cached; return; fi
  $SUDO mkdir -p "$STATE/registry/data"
  $SUDO cp "$ROOT/lab/images/registry.yml" "$STATE/registry/config.yml"
  $SUDO sed -i "s#/var/lib/hailo-lab/registry/data#$STATE/registry/data#" "$STATE/registry/config.yml"
  $SUDO setsid nohup docker-registry serve "$STATE/registry/config.yml" \
    >"$STATE/registry.log" 2>&1 </dev/null &
  wait_for "registry on $REGISTRY" 30 curl -fsS "http://$REGISTRY/v2/"
}

# The lab's network: its hosts find each other by name there. Its own subnet, not 172.17.0.0/16:
# every lab host runs a Docker whose own default bridge takes that range inside the host.
step_lab_network() {
  if docker network inspect "$LAB_NETWORK" >/dev/null 2>&1; then cached; return; fi
  local gw dev
  # An interface that already holds the subnet (a bridge left by a Docker whose state was
  # removed) would take the replies meant for the lab's hosts: they could not even resolve names.
  dev="$(ip -o route show "$LAB_SUBNET" 2>/dev/null | awk '{print $3; exit}')"
  [ -z "$dev" ] || die "$LAB_SUBNET is already routed to $dev (a bridge left behind by an earlier" \
    "Docker?): remove it (ip link delete $dev) or choose another subnet with HAILO_LAB_SUBNET"
  gw="$(python3 -c 'import ipaddress, sys; print(next(ipaddress.ip_network(sys.argv[1]).hosts()))' "$LAB_SUBNET")"
  docker network create --subnet "$LAB_SUBNET" --gateway "$gw" --label io.synchrony.hailo-lab=true \
    "$LAB_NETWORK" >/dev/null
}

# Lab containers (the lab's hosts, each running its own Docker) reach the registry at the lab
# network's gateway; the registry itself stays on 127.0.0.1. Hosts forward their own
# 127.0.0.1:5000 there, so every Docker in the lab uses the same name for it.
step_registry_bridge() {
  local gw
  gw="$(docker network inspect "$LAB_NETWORK" -f '{{(index .IPAM.Config 0).Gateway}}')"
  [ -n "$gw" ] || die "no gateway on the $LAB_NETWORK network"
  if curl -fsS "http://$gw:${REGISTRY##*:}/v2/" >/dev/null 2>&1; then cached; return; fi
  $SUDO setsid nohup socat "TCP-LISTEN:${REGISTRY##*:},bind=$gw,fork,reuseaddr" "TCP:$REGISTRY" \
    >"$STATE/registry-bridge.log" 2>&1 </dev/null &
  wait_for "registry on $gw" 15 curl -fsS "http://$gw:${REGISTRY##*:}/v2/"
}

step_venv() {
  local stamp want
  want="$(cat "$ROOT/pyproject.toml" "$ROOT/requirements/constraints.txt" | sha256sum | cut -c1-16)"
  want="$want-$(python3 -c 'import sys; print(sys.version.split()[0])')"
  stamp="$ROOT/.venv/.hailo-stamp"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then cached; return; fi
  python3 -m venv "$ROOT/.venv"
  # uv (pinned in the constraints) installs the same pinned set as pip would: on this 2-core
  # machine 121 s with pip, 66 s with uv (13 s of it installing uv), bytecode included. It reads
  # no pip.conf: an index given to pip in the environment is passed on. Bytecode is compiled at
  # install as pip does: where PYTHONDONTWRITEBYTECODE is set (CI machines), every
  # ansible-playbook would otherwise compile Ansible from source at each start.
  "$ROOT/.venv/bin/pip" install -q -c "$ROOT/requirements/constraints.txt" uv
  if [ -n "${PIP_INDEX_URL:-}" ]; then export UV_DEFAULT_INDEX="${UV_DEFAULT_INDEX:-$PIP_INDEX_URL}"; fi
  UV_LINK_MODE=copy "$ROOT/.venv/bin/uv" pip install -q --compile-bytecode --python "$ROOT/.venv/bin/python" \
    -c "$ROOT/requirements/constraints.txt" -e "${ROOT}[dev]"
  echo "$want" >"$stamp"
}

step_collection_link() {
  # Makes this checkout resolvable as the collection synchrony.hailo_pipeline (see ansible.cfg),
  # and lab/ as synchrony.hailo_lab: the lab inventory's connection, synchrony.hailo_lab.docker
  # (lab/plugins/connection), never part of what ships.
  local dir="$ROOT/.ansible/collections/ansible_collections/synchrony"
  if [ -L "$dir/hailo_pipeline" ] && [ -L "$dir/hailo_lab" ]; then cached; return; fi
  mkdir -p "$dir"
  ln -sfn ../../../.. "$dir/hailo_pipeline"
  ln -sfn ../../../../lab "$dir/hailo_lab"
}

# debootstrap a minimal Debian, strip docs/man/locales, import it with its platform label.
build_base_image() {
  local suite="$1" arch="$2" tag="$3" dir
  if docker image inspect "$tag" >/dev/null 2>&1; then cached; return; fi
  dir="$(mktemp -d "${TMPDIR:-/tmp}/hailo-lab-rootfs.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: the step runs in its own subshell
  trap "$SUDO rm -rf '$dir'" EXIT
  $SUDO debootstrap --variant=minbase --arch="$arch" "$suite" "$dir" "$MIRROR" \
    >"$STATE/debootstrap-$suite-$arch.log" 2>&1 \
    || die "debootstrap $suite/$arch failed: see $STATE/debootstrap-$suite-$arch.log"
  $SUDO cp "$ROOT/lab/images/dpkg-slim.cfg" "$dir/etc/dpkg/dpkg.cfg.d/90-slim"
  $SUDO cp "$ROOT/lab/images/apt-slim.cfg" "$dir/etc/apt/apt.conf.d/90-slim"
  $SUDO rm -rf "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* \
    "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb \
    "$dir"/var/log/*.log
  find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec $SUDO rm -rf {} +
  $SUDO tar -C "$dir" -c . | docker import --platform "linux/$arch" \
    --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$tag" >/dev/null
}

check_arm64() {
  local got
  got="$(docker run --rm --platform linux/arm64 hailo-lab/debian:bookworm-arm64 uname -m 2>&1)" || true
  [ "$got" = "aarch64" ] || die "arm64 emulation does not work (uname -m said: $got). Re-run: make setup"
}

step_image_bookworm_amd64() { build_base_image bookworm amd64 hailo-lab/debian:bookworm-amd64; }
step_image_trixie_amd64() { build_base_image trixie amd64 hailo-lab/debian:trixie-amd64; }
step_image_bookworm_arm64() { build_base_image bookworm arm64 hailo-lab/debian:bookworm-arm64; check_arm64; }

step_base_in_registry() {
  # debian:bookworm-slim for both platforms, as a manifest list in the lab registry, so that
  # "FROM debian:bookworm-slim" builds resolve for linux/amd64 and linux/arm64 without Docker Hub.
  local list="$REGISTRY/library/debian:bookworm-slim" a
  local want
  want="$(docker image inspect -f '{{.Id}}' hailo-lab/debian:bookworm-amd64 hailo-lab/debian:bookworm-arm64 | sha256sum | cut -c1-16)"
  if [ -f "$STATE/base-registry.stamp" ] && [ "$(cat "$STATE/base-registry.stamp")" = "$want" ] \
     && docker buildx imagetools inspect "$list" >/dev/null 2>&1; then cached; return; fi
  for a in amd64 arm64; do
    docker tag "hailo-lab/debian:bookworm-$a" "$REGISTRY/library/debian:bookworm-slim-$a"
    docker push -q "$REGISTRY/library/debian:bookworm-slim-$a" >/dev/null
  done
  docker buildx imagetools create -t "$list" \
    "$REGISTRY/library/debian:bookworm-slim-amd64" "$REGISTRY/library/debian:bookworm-slim-arm64" >/dev/null
  docker tag hailo-lab/debian:bookworm-amd64 debian:bookworm-slim
  echo "$want" | $SUDO tee "$STATE/base-registry.stamp" >/dev/null
}

build_systemd_image() {
  local suite="$1" tag="hailo-lab/systemd:$1" ctx="$ROOT/lab/images/systemd" want have
  want="$( (cat "$ctx/Dockerfile"; docker image inspect -f '{{.Id}}' "hailo-lab/debian:$suite-amd64") | sha256sum | cut -c1-16)"
  have="$(docker image inspect -f '{{index .Config.Labels "org.hailo-lab.input"}}' "$tag" 2>/dev/null || true)"
  if [ "$have" = "$want" ]; then cached; return; fi
  docker build -q --build-arg "BASE=hailo-lab/debian:$suite-amd64" \
    --label "org.hailo-lab.input=$want" -t "$tag" "$ctx" >/dev/null
}

step_systemd_bookworm() { build_systemd_image bookworm; }
step_systemd_trixie() { build_systemd_image trixie; }

main() {
  $SUDO mkdir -p "$STATE"
  run_step host_packages "host packages (debootstrap, venv, curl, socat, promtool, amtool)"
  run_step docker_packages "Docker engine, buildx, compose v2, QEMU, registry"
  run_step binfmt "arm64 binfmt registration"
  run_step dockerd "Docker daemon running"
  run_step registry "lab registry on $REGISTRY"
  run_step lab_network "lab network $LAB_NETWORK ($LAB_SUBNET)"
  run_step registry_bridge "lab registry reachable from the lab network's gateway"
  # The venv and the three debootstraps share nothing: at the same time (on a fresh 2-core
  # machine the arm64 one under QEMU is the longest; the others fit beside it).
  run_steps venv "Python venv (.venv) from requirements/constraints.txt" \
    image_bookworm_amd64 "base image hailo-lab/debian:bookworm-amd64" \
    image_trixie_amd64 "base image hailo-lab/debian:trixie-amd64" \
    image_bookworm_arm64 "base image hailo-lab/debian:bookworm-arm64 (QEMU)"
  run_step collection_link "collections synchrony.hailo_pipeline and .hailo_lab on the collections path"
  run_step base_in_registry "debian:bookworm-slim (amd64+arm64) in the lab registry"
  run_steps systemd_bookworm "host image hailo-lab/systemd:bookworm (lab, Molecule)" \
    systemd_trixie "host image hailo-lab/systemd:trixie (lab, Molecule)"
  summary
}

main "$@"
