#!/usr/bin/env bash
# Installs what the Go host stand-in of the benchmarks (bench/go-host/) needs: Go and grpc-go with protobuf-go as
# Debian source packages (built in GOPATH mode; no module proxy is needed). Does nothing when all of it is present.
set -euo pipefail

PACKAGES=(golang-go golang-google-grpc-dev golang-google-protobuf-dev)
# The file that proves each source package is installed, beside the go command itself.
SOURCES=(/usr/share/gocode/src/google.golang.org/grpc/clientconn.go
  /usr/share/gocode/src/google.golang.org/protobuf/encoding/protowire/wire.go)

present() {
  command -v go >/dev/null 2>&1 || return 1
  local f
  for f in "${SOURCES[@]}"; do [[ -f $f ]] || return 1; done
}

if present; then
  echo "install-bench-tools: Go ($(go version | awk '{print $3}')) and the grpc-go / protobuf sources are already installed"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  SUDO=(sudo)
else
  SUDO=()
fi

"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null

if ! present; then
  echo "install-bench-tools: still missing after apt-get install (need the go command and ${SOURCES[*]})" >&2
  exit 1
fi
echo "install-bench-tools: installed ${PACKAGES[*]} ($(go version | awk '{print $3}'))"
