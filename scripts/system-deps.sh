#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, when they are missing.
set -euo pipefail
packages=()
command -v docker-compose >/dev/null 2>&1 || packages+=(docker-compose)   # validates docker-compose.yml
[ -x /usr/bin/chromium ] || packages+=(chromium)                          # dashboard tests (Playwright)
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)             # promtool rule tests, alerting test
command -v prometheus-alertmanager >/dev/null 2>&1 || packages+=(prometheus-alertmanager)  # alerting test
command -v wrk >/dev/null 2>&1 || packages+=(wrk)                         # receiver benchmark (flowscope bench)
if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi
echo "installing system packages: ${packages[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to apt-get install ${packages[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
