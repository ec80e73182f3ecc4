#!/usr/bin/env bash
# Let Docker run GPU containers: install the NVIDIA Container Toolkit and configure Docker for it.
#
#   sudo scripts/install-nvidia-container-toolkit.sh           # install what is missing, configure, verify
#   scripts/install-nvidia-container-toolkit.sh --check        # report what is missing, change nothing
#   sudo scripts/install-nvidia-container-toolkit.sh --cdi     # also write CDI specs to /etc/cdi/nvidia.yaml
#   sudo scripts/install-nvidia-container-toolkit.sh --image IMAGE   # verify with another GPU image
#   sudo scripts/install-nvidia-container-toolkit.sh --no-verify     # skip the final docker run
#
# For Debian/Ubuntu GPU hosts, as root. The NVIDIA driver must be installed first (nvidia-smi works):
# >= 525 for CUDA 12 images, >= 555.42 recommended (kerastack's CUDA 12.5 images). Safe to run again.
#
# Environment:
#   KERASTACK_GPU_IMAGE              image for the final check (default ghcr.io/kerastack/keras-jupyter:latest-gpu)
#   NVIDIA_CONTAINER_TOOLKIT_VERSION pin the toolkit packages to this version (e.g. 1.17.8-1)
set -euo pipefail

KEYRING=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
LIST=/etc/apt/sources.list.d/nvidia-container-toolkit.list
GPGKEY_URL=https://nvidia.github.io/libnvidia-container/gpgkey
LIST_URL=https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list
CDI_SPEC=/etc/cdi/nvidia.yaml
MIN_DRIVER=525
RECOMMENDED_DRIVER=555.42
IMAGE=${KERASTACK_GPU_IMAGE:-ghcr.io/kerastack/keras-jupyter:latest-gpu}
TOOLKIT_VERSION=${NVIDIA_CONTAINER_TOOLKIT_VERSION:-}
CHECK_ONLY=0
WANT_CDI=0
VERIFY=1

log() { printf 'install-nvidia-container-toolkit: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  # The comment block at the top of this file, without the '# '.
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --check) CHECK_ONLY=1 ;;
    --cdi) WANT_CDI=1 ;;
    --no-verify) VERIFY=0 ;;
    --image)
      [[ $# -ge 2 && -n $2 ]] || die "--image needs an image reference"
      IMAGE=$2; shift ;;
    --image=*)
      IMAGE=${1#--image=}
      [[ -n $IMAGE ]] || die "--image needs an image reference" ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
  shift
done

have() { command -v "$1" >/dev/null 2>&1; }

# True when version $1 >= version $2 (dotted numbers).
version_ge() { [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1) == "$2" ]]; }

driver_version() {
  # Empty when there is no working driver.
  have nvidia-smi || return 0
  nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1 | tr -d '[:space:]' || true
}

toolkit_installed() {
  have nvidia-ctk && [[ $(dpkg-query -W -f='${Status}' nvidia-container-toolkit 2>/dev/null) == "install ok installed" ]]
}

repo_configured() {
  [[ -s $KEYRING && -s $LIST ]] && grep -q "signed-by=$KEYRING" "$LIST"
}

daemon_up() { docker info >/dev/null 2>&1; }

docker_runtime_configured() {
  local runtimes
  runtimes=$(docker info --format '{{json .Runtimes}}' 2>/dev/null) || return 1
  [[ $runtimes == *'"nvidia'* ]]
}

cdi_present() { [[ -s $CDI_SPEC ]]; }

require_driver() {
  local version
  version=$(driver_version)
  if [[ -z $version ]]; then
    die "no working NVIDIA driver: 'nvidia-smi' is missing or fails.
  Install the NVIDIA driver first (>= $MIN_DRIVER for CUDA 12 images, >= $RECOMMENDED_DRIVER recommended),
  e.g. Ubuntu: sudo ubuntu-drivers install; Debian: the nvidia-driver package from non-free
  (https://wiki.debian.org/NvidiaGraphicsDrivers), or NVIDIA's own packages. Reboot, check nvidia-smi, run this again."
  fi
  if ! version_ge "$version" "$MIN_DRIVER"; then
    die "NVIDIA driver $version is too old for CUDA 12 images: install >= $MIN_DRIVER (>= $RECOMMENDED_DRIVER recommended)"
  fi
  if ! version_ge "$version" "$RECOMMENDED_DRIVER"; then
    log "warning: driver $version works with CUDA 12 only through forward compatibility; >= $RECOMMENDED_DRIVER is recommended for kerastack's CUDA 12.5 images"
  fi
  log "ok: NVIDIA driver $version"
}

if [[ $CHECK_ONLY == 1 ]]; then
  status=0
  version=$(driver_version)
  if [[ -z $version ]]; then
    log "missing: a working NVIDIA driver (nvidia-smi); install it first (>= $MIN_DRIVER, >= $RECOMMENDED_DRIVER recommended)"; status=1
  elif ! version_ge "$version" "$MIN_DRIVER"; then
    log "too old: NVIDIA driver $version (need >= $MIN_DRIVER, >= $RECOMMENDED_DRIVER recommended)"; status=1
  else
    log "ok: NVIDIA driver $version"
  fi
  if repo_configured; then log "ok: NVIDIA apt repository ($LIST)"; else log "missing: NVIDIA apt repository ($LIST)"; status=1; fi
  if toolkit_installed; then log "ok: $(nvidia-ctk --version 2>/dev/null | head -n1)"; else log "missing: nvidia-container-toolkit"; status=1; fi
  if ! have docker; then
    log "missing: the docker CLI (see scripts/install-docker.sh)"; status=1
  elif ! daemon_up; then
    log "not reachable: the Docker daemon"; status=1
  elif docker_runtime_configured; then
    log "ok: Docker has the nvidia runtime"
  else
    log "missing: the nvidia runtime in Docker (nvidia-ctk runtime configure --runtime=docker, then restart Docker)"; status=1
  fi
  if cdi_present; then log "ok: CDI specs ($CDI_SPEC)"; else log "optional: no CDI specs ($CDI_SPEC; --cdi writes them)"; fi
  [[ $status == 0 ]] && log "ok: Docker can run GPU containers (docker run --gpus all ...)"
  exit "$status"
fi

[[ $(id -u) == 0 ]] || die "this needs root: run 'sudo $0'"
have apt-get || die "only Debian/Ubuntu (apt-get) are supported; for other systems see https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html"
have docker || die "the docker CLI is missing: install Docker first (sudo scripts/install-docker.sh)"

require_driver

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update_once() {
  if [[ $apt_updated == 0 ]]; then
    log "apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
}

# A temporary folder removed on exit, for downloads written into place only when complete.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! repo_configured; then
  if ! have curl || ! have gpg; then
    apt_update_once
    log "installing curl and gnupg"
    apt-get install -y -qq --no-install-recommends curl gnupg ca-certificates >/dev/null
  fi
  log "adding NVIDIA's apt repository for the Container Toolkit"
  curl -fsSL "$GPGKEY_URL" -o "$work/gpgkey"
  gpg --batch --yes --dearmor -o "$work/keyring.gpg" "$work/gpgkey"
  install -D -m 0644 "$work/keyring.gpg" "$KEYRING"
  curl -fsSL "$LIST_URL" -o "$work/list"
  sed "s#deb https://#deb [signed-by=$KEYRING] https://#g" "$work/list" >"$work/list.signed"
  grep -q "signed-by=$KEYRING" "$work/list.signed" || die "unexpected content in $LIST_URL (no 'deb https://' line)"
  install -D -m 0644 "$work/list.signed" "$LIST"
  apt_updated=0  # the new repository needs an update
else
  log "ok: NVIDIA apt repository already configured"
fi

if ! toolkit_installed; then
  apt_update_once
  packages=(nvidia-container-toolkit)
  if [[ -n $TOOLKIT_VERSION ]]; then
    packages=("nvidia-container-toolkit=$TOOLKIT_VERSION" "nvidia-container-toolkit-base=$TOOLKIT_VERSION"
              "libnvidia-container-tools=$TOOLKIT_VERSION" "libnvidia-container1=$TOOLKIT_VERSION")
  fi
  log "installing ${packages[*]}"
  apt-get install -y -qq "${packages[@]}" >/dev/null
else
  log "ok: nvidia-container-toolkit already installed"
fi
log "ok: $(nvidia-ctk --version 2>/dev/null | head -n1)"

daemon_up || die "the Docker daemon is not running: start it (sudo systemctl start docker, or scripts/install-docker.sh), then run this again"

restarted=1
if docker_runtime_configured; then
  log "ok: Docker already has the nvidia runtime"
else
  log "nvidia-ctk runtime configure --runtime=docker"
  nvidia-ctk runtime configure --runtime=docker
  if [[ -d /run/systemd/system ]] && have systemctl; then
    log "restarting Docker (systemctl restart docker): running containers stop unless live-restore is on"
    systemctl restart docker
    for _ in $(seq 1 30); do
      daemon_up && break
      sleep 1
    done
    daemon_up || die "Docker did not come back within 30 s after the restart: see 'journalctl -u docker'"
  else
    restarted=0
    log "no systemd here: restart dockerd yourself so it reads /etc/docker/daemon.json (e.g. 'service docker restart', or stop dockerd and start it again)"
  fi
fi

if [[ $WANT_CDI == 1 ]]; then
  log "nvidia-ctk cdi generate --output=$CDI_SPEC"
  mkdir -p "$(dirname "$CDI_SPEC")"
  nvidia-ctk cdi generate --output="$CDI_SPEC"
  nvidia-ctk cdi list >&2 || true
fi

if [[ $VERIFY == 0 ]]; then
  log "skipping the check with a GPU container (--no-verify)"
  exit 0
fi
if [[ $restarted == 0 ]]; then
  log "restart Docker, then check with: docker run --rm --gpus all --entrypoint nvidia-smi $IMAGE"
  exit 0
fi

log "checking: docker run --rm --gpus all --entrypoint nvidia-smi $IMAGE"
if docker run --rm --gpus all --entrypoint nvidia-smi "$IMAGE"; then
  log "ok: Docker runs GPU containers; start Jupyter on the GPU with: scripts/launch --gpu"
else
  die "the GPU check failed. If the image could not be pulled, pass one you have with --image (any image works:
  the toolkit mounts nvidia-smi into it). Otherwise see 'nvidia-ctk --version', /etc/docker/daemon.json and the Docker log."
fi
