#!/usr/bin/env bash
# Install what the integration tests use besides Docker (idempotent; Debian/Ubuntu, as root):
# debootstrap (offline base images), docker-registry + htpasswd (a real registry on 127.0.0.1),
# openssl (a throwaway CA to prove the proxy CA never lands in an image), chromium + chromium-driver
# (the browser test opens JupyterLab headless; selenium drives it through Debian's chromedriver),
# nodejs + npm and python3-venv (the hub test: scripts/install-hub.sh puts configurable-http-proxy and a
# pinned JupyterHub into ~/.cache/kerastack/hub when the test first runs), qemu-user-static + binfmt-support
# (the arm64 image is built and smoke-tested under emulation on an amd64 machine; its handler is registered
# with the F flag, so containers run it without QEMU inside them).
set -euo pipefail

BINFMT=/proc/sys/fs/binfmt_misc
# The architecture the tests build besides this machine's own: arm64 on amd64, amd64 on arm64.
case "$(uname -m)" in
  x86_64) foreign=aarch64 ;;
  aarch64) foreign=x86_64 ;;
  *) foreign="" ;;
esac

needed=()
command -v debootstrap >/dev/null 2>&1 || [[ -x /usr/sbin/debootstrap ]] || needed+=(debootstrap)
command -v docker-registry >/dev/null 2>&1 || needed+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || needed+=(apache2-utils)
command -v openssl >/dev/null 2>&1 || needed+=(openssl)
command -v make >/dev/null 2>&1 || needed+=(make)
command -v chromium >/dev/null 2>&1 || needed+=(chromium)
command -v chromedriver >/dev/null 2>&1 || needed+=(chromium-driver)
command -v node >/dev/null 2>&1 || needed+=(nodejs)
command -v npm >/dev/null 2>&1 || needed+=(npm)
python3 -c 'import ensurepip' >/dev/null 2>&1 || needed+=(python3-venv)
if [[ -n $foreign ]]; then
  [[ -x /usr/bin/qemu-$foreign-static ]] || needed+=(qemu-user-static)
  command -v update-binfmts >/dev/null 2>&1 || needed+=(binfmt-support)
fi

# Mount binfmt_misc where it is not (a container or a minimal VM), then register and enable QEMU's handler.
# Idempotent; without root it only says what is missing (the arm64 tests then skip with that reason).
register_binfmt() {
  [[ -n $foreign ]] || return 0
  if [[ $(id -u) != 0 ]]; then
    [[ -e $BINFMT/qemu-$foreign ]] || echo "install-test-deps: note: no qemu-$foreign binfmt handler and not root: the arm64 tests will skip" >&2
    return 0
  fi
  if [[ ! -e $BINFMT/status ]]; then
    mount -t binfmt_misc binfmt_misc "$BINFMT"
  fi
  if [[ ! -e $BINFMT/qemu-$foreign ]]; then
    update-binfmts --import "qemu-$foreign" >/dev/null 2>&1 || true
  fi
  update-binfmts --enable "qemu-$foreign" >/dev/null 2>&1 || true
  if ! grep -qx enabled "$BINFMT/qemu-$foreign" 2>/dev/null || ! grep -q '^flags: .*F' "$BINFMT/qemu-$foreign"; then
    echo "install-test-deps: error: qemu-$foreign is not registered with the F flag in $BINFMT:" >&2
    cat "$BINFMT/qemu-$foreign" >&2 2>/dev/null || true
    exit 1
  fi
  echo "install-test-deps: ok: qemu-$foreign registered ($(grep '^flags:' "$BINFMT/qemu-$foreign"))" >&2
}

node_too_old() {
  local major
  major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  (( major < 18 ))
}
warn_old_node() {
  if command -v node >/dev/null 2>&1 && node_too_old; then
    echo "install-test-deps: warning: Node.js $(node --version) is older than 18, which configurable-http-proxy 4.6 needs: the hub test will fail; install Debian 13's nodejs or NodeSource's" >&2
  fi
}

if [[ ${#needed[@]} == 0 ]]; then
  echo "install-test-deps: ok: nothing to install" >&2
  register_binfmt
  warn_old_node
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "install-test-deps: error: missing ${needed[*]}; run as root or: sudo apt-get install ${needed[*]}" >&2
  exit 1
fi
echo "install-test-deps: installing ${needed[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
# Debian's package starts nothing without an init system; the tests run their own registries.
register_binfmt
warn_old_node
