#!/usr/bin/env bash
# Install and start a Docker engine with the buildx CLI plugin from distribution packages.
#
# The modern form of the classic "curl | sh" install step: Debian/Ubuntu packages only, no
# vendor repository, safe to run again (it only does what is missing). Debian 12 and 13 both work
# (/etc/debian_version tells which); dockerd runs under systemd where there is one, otherwise in its
# own session, detached from the terminal that started it.
#
#   sudo scripts/install-docker.sh            # install what is missing, start dockerd
#   scripts/install-docker.sh --check         # say what is missing, change nothing
#
# Environment:
#   DEBIAN_MIRROR   mirror for the Debian 12 docker-buildx fallback from Debian 13 (default: the one apt uses)
#   DOCKERD_LOG     where a dockerd started by this script logs (default /var/log/dockerd.log)
set -euo pipefail

BUILDX_PLUGIN_DIR=/usr/libexec/docker/cli-plugins
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
CHECK_ONLY=0

log() { printf 'install-docker: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
}

for arg in "$@"; do
  case "$arg" in
    --check) CHECK_ONLY=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$arg' (see --help)" ;;
  esac
done

have() { command -v "$1" >/dev/null 2>&1; }
daemon_up() { docker info >/dev/null 2>&1; }
buildx_ok() { docker buildx version >/dev/null 2>&1; }
engine_installed() { have dockerd; }

if [[ $CHECK_ONLY == 1 ]]; then
  status=0
  have docker || { log "missing: the docker CLI"; status=1; }
  engine_installed || { log "missing: the Docker engine (dockerd)"; status=1; }
  daemon_up || { log "not running: the Docker daemon"; status=1; }
  buildx_ok || { log "missing: the buildx CLI plugin"; status=1; }
  [[ $status == 0 ]] && log "ok: engine running, buildx present"
  exit "$status"
fi

if daemon_up && buildx_ok; then
  log "ok: engine running and buildx present; nothing to do"
  exit 0
fi

[[ $(id -u) == 0 ]] || die "installing Docker needs root: run 'sudo $0', or install Docker yourself (https://docs.docker.com/engine/install/)"
have apt-get || die "only Debian/Ubuntu (apt-get) are supported; install Docker Engine and buildx with your distribution's packages"

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update_once() {
  if [[ $apt_updated == 0 ]]; then
    log "apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
}

has_candidate() {
  local candidate
  candidate=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
  [[ -n $candidate && $candidate != "(none)" ]]
}

if ! engine_installed; then
  apt_update_once
  log "installing docker.io (engine, containerd, runc)"
  # The docker CLI may already be on PATH from elsewhere; docker.io brings its own, which is harmless.
  apt-get install -y -qq --no-install-recommends docker.io iptables ca-certificates >/dev/null
fi

debian_mirror() {
  if [[ -n ${DEBIAN_MIRROR:-} ]]; then
    echo "$DEBIAN_MIRROR"; return
  fi
  local uri
  uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | grep -E 'debian/?( |$)' | grep -v security | head -n1 \
        | sed -E 's/^URIs:[[:space:]]*//; s/^deb (\[[^]]*\] )?//; s/ .*//')
  echo "${uri:-http://deb.debian.org/debian}"
}

install_buildx_from_trixie() {
  # Debian 12 does not package buildx; Debian 13's static Go binary runs fine as a CLI plugin.
  local work mirror deb
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  mirror=$(debian_mirror)
  log "buildx is not packaged here; fetching docker-buildx from Debian 13 (trixie) at $mirror"
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" > "$work/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o Debug::NoLocking=1)
  apt-get "${opts[@]}" update -qq
  (cd "$work" && apt-get "${opts[@]}" download docker-buildx >/dev/null)
  deb=$(ls "$work"/docker-buildx_*.deb)
  dpkg-deb -x "$deb" "$work/root"
  install -D -m 0755 "$work/root/usr/libexec/docker/cli-plugins/docker-buildx" "$BUILDX_PLUGIN_DIR/docker-buildx"
}

# The Debian release decides where buildx comes from: Debian 13 (trixie) and later package
# docker-buildx; Debian 12 (bookworm) does not, so its plugin comes from trixie's package.
debian_major() {
  local version
  version=$(cat /etc/debian_version 2>/dev/null || true)
  case "$version" in
    [0-9]*) echo "${version%%.*}" ;;
    trixie*) echo 13 ;;
    bookworm*) echo 12 ;;
    *) echo 0 ;;   # unknown (testing/sid, Ubuntu): ask apt what it has
  esac
}

if ! buildx_ok; then
  apt_update_once
  major=$(debian_major)
  if (( major >= 13 )) || has_candidate docker-buildx; then
    log "installing docker-buildx (Debian release: ${major/#0/unknown})"
    apt-get install -y -qq --no-install-recommends docker-buildx >/dev/null
  else
    install_buildx_from_trixie   # Debian 12
  fi
  buildx_ok || die "buildx was installed to $BUILDX_PLUGIN_DIR but 'docker buildx version' still fails"
fi

# A dockerd that is still starting gets time to answer; one that is shutting down (stopped a moment
# ago) is waited out, then a new one starts. One that runs but never answers is an error, not a second daemon.
wait_for_running_dockerd() {
  local i
  for i in $(seq 1 60); do
    pgrep -x dockerd >/dev/null || return 1
    daemon_up && return 0
    [[ $i == 1 ]] && log "a dockerd process is running: waiting for it to answer or to exit"
    sleep 1
  done
  die "a dockerd process runs but has not answered for 60 s (see $DOCKERD_LOG); stop it (pkill -x dockerd) and retry"
}

# dockerd gives the containerd it starts 15 s to answer, then exits ("timeout waiting for containerd to
# start"); a fresh machine, busy or with cold caches, once missed that on CI. Each try starts containerd
# afresh (it dies with dockerd), with the caches the last one warmed. Any other exit, or a dockerd that
# runs but never answers, is an error.
DOCKERD_ATTEMPTS=3

launch_dockerd_and_wait() {
  local since
  since=$({ wc -l <"$DOCKERD_LOG"; } 2>/dev/null || echo 0)
  # Its own session and process group, stdin closed: a Ctrl-C or a closed terminal in the shell that
  # ran this script (or `make run`) must not reach the engine. `setsid -f` always forks, so dockerd is
  # never the leader of our group even when this script is.
  setsid -f dockerd </dev/null >>"$DOCKERD_LOG" 2>&1
  sleep 1
  for _ in $(seq 1 60); do
    daemon_up && return 0
    if ! pgrep -x dockerd >/dev/null; then
      # Only this attempt's lines: an old failure in the log must not be taken for this one.
      if grep -q 'timeout waiting for containerd to start' < <(tail -n +"$((since + 1))" "$DOCKERD_LOG"); then
        return 2
      fi
      tail -n 20 "$DOCKERD_LOG" >&2 || true
      die "dockerd exited while starting (see $DOCKERD_LOG)"
    fi
    sleep 1
  done
  tail -n 20 "$DOCKERD_LOG" >&2 || true
  die "dockerd did not answer within 60 s (see $DOCKERD_LOG)"
}

start_dockerd() {
  if [[ -d /run/systemd/system ]] && have systemctl; then
    log "starting docker with systemd"
    systemctl enable --now docker
    for _ in $(seq 1 60); do
      daemon_up && return 0
      sleep 1
    done
    die "docker was started with systemd but did not answer within 60 s (journalctl -u docker)"
  fi
  wait_for_running_dockerd && return 0
  local attempt status
  for attempt in $(seq 1 "$DOCKERD_ATTEMPTS"); do
    if [[ $attempt == 1 ]]; then
      log "no init system: starting dockerd in its own session (log: $DOCKERD_LOG)"
    else
      log "starting dockerd again (attempt $attempt of $DOCKERD_ATTEMPTS)"
    fi
    status=0
    launch_dockerd_and_wait || status=$?
    [[ $status == 0 ]] && return 0
    log "dockerd gave up waiting for its containerd (attempt $attempt of $DOCKERD_ATTEMPTS)"
  done
  tail -n 20 "$DOCKERD_LOG" >&2 || true
  die "dockerd could not start containerd in $DOCKERD_ATTEMPTS attempts (see $DOCKERD_LOG); is the disk full or the machine overloaded?"
}

daemon_up || start_dockerd
log "ok: $(docker version --format 'engine {{.Server.Version}}, client {{.Client.Version}}'), $(docker buildx version | cut -d' ' -f1-2)"
