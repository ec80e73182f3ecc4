#!/usr/bin/env bash
# Install what the integration tests use besides Docker (idempotent; Debian/Ubuntu, as root):
# debootstrap (offline base images), docker-registry + htpasswd (a real registry on 127.0.0.1),
# openssl (a throwaway CA to prove the proxy CA never lands in an image), chromium + chromium-driver
# (the browser test opens JupyterLab headless; selenium drives it through Debian's chromedriver),
# nodejs + npm and python3-venv (the hub test: scripts/install-hub.sh puts configurable-http-proxy and a
# pinned JupyterHub into ~/.cache/kerastack/hub when the test first runs).
set -euo pipefail

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
warn_old_node
