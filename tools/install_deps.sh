#!/usr/bin/env bash
# Installs the Debian packages lmscope needs, only those that are missing (Debian 12; run as root,
# or with sudo available). Called by `make run` / `make test`; safe to run again.
set -euo pipefail
PKGS=(build-essential cmake pkg-config nlohmann-json3-dev libcli11-dev libfmt-dev libpcre2-dev
      libutf8proc-dev libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev python3 ccache)
if [[ "${LMSCOPE_WITH_BROWSER:-1}" == 1 ]]; then PKGS+=(chromium); fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm may come from elsewhere than Debian (e.g. a NodeSource nodejs that bundles npm, which
# conflicts with Debian's npm package): only install them when the commands are missing
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]} == 0)); then exit 0; fi
echo "install_deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) != 0 ]]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
