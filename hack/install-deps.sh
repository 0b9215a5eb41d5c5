#!/usr/bin/env bash
# Installs the Debian packages Switchyard's tests and tools need, and nothing when they are all there.
# Called by `make test` and `make demo`, so a fresh machine needs no manual setup.
set -euo pipefail

pkgs=(
  iptables        # iptables-nft-restore and iptables-legacy-restore: the iptables backend applies through them
  ipset           # IPVS mode matches its ipsets; the tools verify them
  nftables        # nft: upstream kube-proxy's --cleanup and nftables mode, the bench against it, the tests' checks
  conntrack       # tests read the conntrack table (Switchyard itself deletes entries through netlink)
  iproute2        # ip netns / ip link for the throwaway test namespaces
  iputils-ping    # the e2e harness pings nodes across the underlay
  procps          # sysctl, kill and uptime in the scripts
  jq              # the local cluster's scripts (hack/lib) read API objects and CNI configs with it
  socat           # the unix-socket relay from node namespaces to the API server on loopback
  etcd-server     # the local control plane's datastore
  openssl         # certificates for the local control plane
  qemu-system-x86 # the IPVS kernel runs under qemu, since this kernel has no IPVS
  busybox-static  # the VM's initramfs
  cpio
  xz-utils
  zstd            # the VM image build unpacks Debian's zstd-compressed kernel modules
  kmod
  curl
)

# --list prints the packages, one a line, for hack/check-deps.sh.
if [ "${1:-}" = --list ]; then
  printf '%s\n' "${pkgs[@]}"
  exit 0
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: need root to apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
