#!/usr/bin/env bash
# Install a JupyterHub for the hub test and the DockerSpawner example (deploy/jupyterhub/), from the
# project's pins only: JupyterHub + DockerSpawner into DEST/venv from requirements/hub/requirements.txt
# (pip --require-hashes), configurable-http-proxy into DEST/proxy with `npm ci` from
# requirements/hub/package-lock.json (every package checked by its integrity hash). Idempotent: a
# DEST made from the same lock files is left as it is. Needs python3 (with venv), Node.js >= 18 and npm.
#
#   scripts/install-hub.sh [DEST]    (default: ${XDG_CACHE_HOME:-~/.cache}/kerastack/hub)
#
# Prints DEST on stdout; the hub is DEST/venv/bin/jupyterhub, the proxy DEST/proxy/node_modules/.bin/configurable-http-proxy.
# A proxy CA (PIP_CERT, NODE_EXTRA_CA_CERTS) is taken from the environment by pip and npm themselves.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
locks="$here/requirements/hub"
dest="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/kerastack/hub}"

for tool in python3 node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install-hub: error: $tool is missing; run scripts/install-test-deps.sh (as root) or install it" >&2; exit 1; }
done
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 18 )); then
  echo "install-hub: error: configurable-http-proxy 4.6 needs Node.js >= 18, found $(node --version); install a newer nodejs (Debian 13's, or NodeSource's)" >&2
  exit 1
fi

stamp="$(cat "$locks/requirements.txt" "$locks/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [[ -f "$dest/.stamp" && "$(cat "$dest/.stamp")" == "$stamp" ]]; then
  echo "install-hub: ok: $dest is up to date" >&2
  echo "$dest"
  exit 0
fi

echo "install-hub: installing into $dest" >&2
# Built in place (a venv's scripts name its path); the stamp, written last, marks it complete.
rm -rf "$dest"
mkdir -p "$dest/proxy"
python3 -m venv "$dest/venv"
"$dest/venv/bin/pip" install --quiet --disable-pip-version-check --no-input --require-hashes --no-deps -r "$locks/requirements.txt" >&2
cp "$locks/package.json" "$locks/package-lock.json" "$dest/proxy/"
(cd "$dest/proxy" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
"$dest/venv/bin/jupyterhub" --version >/dev/null
"$dest/proxy/node_modules/.bin/configurable-http-proxy" --version >/dev/null
echo "$stamp" > "$dest/.stamp"
echo "$dest"
