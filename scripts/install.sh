#!/usr/bin/env bash
# Installs what nodeset and its tests need on a Debian machine, then the npm dependencies.
# Only what is missing is installed; run as root (the local provider makes network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ip >/dev/null || need+=(iproute2)
command -v unshare >/dev/null && command -v nsenter >/dev/null || need+=(util-linux)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null && command -v ssh >/dev/null || need+=(openssh-client)
command -v nginx >/dev/null || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
command -v wget >/dev/null || need+=(wget)
command -v mariadbd >/dev/null || command -v mysqld >/dev/null || need+=(mariadb-server)
command -v mariadb >/dev/null || command -v mysql >/dev/null || need+=(mariadb-client)
command -v ansible-playbook >/dev/null || [ "${NODESET_WITH_ANSIBLE:-0}" != 1 ] || need+=(ansible)
# The status page's browser tests (playwright-core drives Debian's chromium, headless).
command -v chromium >/dev/null || need+=(chromium)
# systemd-mode local nodes ([provider] boot = systemd) boot a Debian image made with these.
[ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
[ -x /usr/bin/systemd-nspawn ] || need+=(systemd-container)

if [ ${#need[@]} -gt 0 ]; then
  echo "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps Debian from starting the services it installs: nodes run their own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
mkdir -p /run/sshd

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

# The image systemd-mode local nodes boot: built once per machine (a few minutes), then cached.
[ -f dist/providers/local-image-build.js ] || npm run -s build
node scripts/local-image.mjs
