#!/usr/bin/env bash
# Debian's Chromium for the browser test. Needs root (as in CI); elsewhere it says so and stops.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "not root or no apt-get: install Debian's chromium package yourself to run the browser test" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
