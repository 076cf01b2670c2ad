#!/usr/bin/env bash
# Installs the real servers the tests start (test/servers/), only when one is missing; never leaves them running as services.
set -euo pipefail

# The binary that proves each part is installed, and the packages that provide them all.
BINARIES=(radosgw ceph-mon ceph-osd dovecot radicale xandikos swift-proxy-server memcached openssl strip)
PACKAGES=(radosgw ceph-mon ceph-osd dovecot-imapd radicale xandikos swift swift-proxy swift-account
  swift-container swift-object memcached openssl binutils curl)
# System services these packages may start; the tests run their own private instances instead.
SERVICES=(dovecot radicale memcached ceph-mon.target ceph-osd.target ceph-radosgw.target ceph.target
  swift-proxy swift-account swift-container swift-object xandikos)

have() {
  # dovecot lives in /usr/sbin, which is not on every user's PATH.
  command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]] || [[ -x "/usr/bin/$1" ]]
}

missing=()
for b in "${BINARIES[@]}"; do have "$b" || missing+=("$b"); done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-test-servers: all test servers are already installed (${BINARIES[*]})"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  SUDO=(sudo)
else
  SUDO=()
fi

# Keep apt from starting the daemons it installs: policy-rc.d answering 101 forbids every invoke-rc.d start.
# An existing policy (Docker images ship one) is left alone.
POLICY=/usr/sbin/policy-rc.d
created_policy=no
if [[ ! -e $POLICY ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  created_policy=yes
fi
cleanup() { if [[ $created_policy == yes ]]; then "${SUDO[@]}" rm -f "$POLICY"; fi; }
trap cleanup EXIT

"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null

# With systemd, policy-rc.d is not always honoured: stop and disable whatever did start anyway.
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
  for s in "${SERVICES[@]}"; do
    "${SUDO[@]}" systemctl disable --now "$s" >/dev/null 2>&1 || true
  done
fi

still=()
for b in "${BINARIES[@]}"; do have "$b" || still+=("$b"); done
if [[ ${#still[@]} -gt 0 ]]; then
  echo "install-test-servers: still missing after apt-get install: ${still[*]}" >&2
  exit 1
fi
echo "install-test-servers: installed ${PACKAGES[*]} (was missing: ${missing[*]}); no service left running"
