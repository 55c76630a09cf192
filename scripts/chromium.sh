#!/usr/bin/env bash
# Debian's chromium, for the browser test of TensorBoard's Embedding Projector (tests/corpus/test_projector.py):
# installed from the distribution's packages when missing; nothing is done (and nothing is downloaded) when it is
# there. No browser download of its own and no driver: the test drives chromium over the DevTools protocol on a pipe.
# Usage: bash scripts/chromium.sh   (as root, or with sudo available)
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "scripts/chromium.sh: no apt-get here; install Chromium with this system's package manager" >&2
    exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
${SUDO[@]+"${SUDO[@]}"} apt-get update -qq
# fonts-liberation: readable text in screenshots (a recommendation of chromium-common, the rest of which is for desktops)
${SUDO[@]+"${SUDO[@]}"} apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
command -v chromium >/dev/null
echo "scripts/chromium.sh: installed $(chromium --version 2>/dev/null)"
