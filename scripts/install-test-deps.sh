#!/usr/bin/env bash
# Install what the integration tests use besides Docker (idempotent; Debian/Ubuntu, as root):
# debootstrap (offline base images), docker-registry + htpasswd (a real registry on 127.0.0.1),
# openssl (a throwaway CA to prove the proxy CA never lands in an image), chromium + chromium-driver
# (the browser test opens JupyterLab headless; selenium drives it through Debian's chromedriver).
set -euo pipefail

needed=()
command -v debootstrap >/dev/null 2>&1 || [[ -x /usr/sbin/debootstrap ]] || needed+=(debootstrap)
command -v docker-registry >/dev/null 2>&1 || needed+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || needed+=(apache2-utils)
command -v openssl >/dev/null 2>&1 || needed+=(openssl)
command -v make >/dev/null 2>&1 || needed+=(make)
command -v chromium >/dev/null 2>&1 || needed+=(chromium)
command -v chromedriver >/dev/null 2>&1 || needed+=(chromium-driver)

if [[ ${#needed[@]} == 0 ]]; then
  echo "install-test-deps: ok: nothing to install" >&2
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
