#!/usr/bin/env bash
# Installs the Debian bookworm packages keel's build, tests, examples,
# benchmarks and fuzzers need, and only those not yet installed: a second run
# installs nothing. Runs as root (or through sudo when it is there).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libfmt-dev libspdlog-dev nlohmann-json3-dev
  libsqlitecpp-dev libsqlite3-dev sqlite3
  libssl-dev libboost-dev libboost-system-dev
  catch2 libbenchmark-dev librapidcheck-dev
  clang-16 libclang-rt-16-dev clang-format clang-tidy
  libatomic-queue-dev libconcurrentqueue-dev libreaderwriterqueue-dev
  nodejs npm python3 python3-cryptography gnuplot-nox
  libargon2-dev libpq-dev postgresql-15 libpqxx-dev tinyproxy
  qemu-user g++-aarch64-linux-gnu libboost-stacktrace-dev libhyperscan-dev
)

# The aarch64 preset cross-builds the core tests against Debian's multiarch
# target libraries (the compiler and qemu-user are in the list above).
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  if [[ $(id -u) -eq 0 ]]; then dpkg --add-architecture arm64; else sudo dpkg --add-architecture arm64; fi
fi
packages+=(libfmt-dev:arm64 librapidcheck-dev:arm64)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# The machine may carry its own node/npm outside Debian's packages; either will do.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  keep=()
  for p in "${missing[@]}"; do
    [[ "$p" == nodejs || "$p" == npm ]] || keep+=("$p")
  done
  missing=("${keep[@]+"${keep[@]}"}")
fi

if ((${#missing[@]})); then
  echo "keel deps: installing ${missing[*]}"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "keel deps: run as root to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "keel deps: all Debian packages present"
fi

# The WebSocket tests' peer (npm `ws`), pinned by tests/package-lock.json.
if [[ -f tests/node/package-lock.json ]]; then
  if [[ ! -d tests/node/node_modules ]] || [[ tests/node/package-lock.json -nt tests/node/node_modules/.package-lock.json ]]; then
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
