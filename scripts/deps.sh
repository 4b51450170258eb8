#!/usr/bin/env bash
# Installs what otalab needs to build and test on Debian 12, only what is missing.
# Idempotent; used by scripts/demo and scripts/test.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libcoap3-dev libcoap3-bin libmbedtls-dev
      libwebsockets-dev libjansson-dev libcriterion-dev libssl-dev clang libclang-rt-14-dev
      ca-certificates curl procps python3 tshark)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
