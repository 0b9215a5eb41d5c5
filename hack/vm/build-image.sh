#!/usr/bin/env bash
# Builds (or finds in the cache) the kernel and base initramfs that hack/vm/run.sh boots, and prints
# the directory holding them. Everything comes from Debian packages: the kernel package is downloaded
# and unpacked, never installed on this machine; the user-space tools are copied out of the host's
# installed packages together with the shared libraries they load.
#
# Usage: hack/vm/build-image.sh            prints the image directory (vmlinux, vmlinuz, base.cpio.gz, info)
# Env:   SWITCHYARD_VM_KERNEL_PKG           overrides the pinned kernel package (see KERNEL_PKG below)
#        XDG_CACHE_HOME                      cache root (default ~/.cache); images live in switchyard/vm
set -euo pipefail

# The kernel, pinned by package name. This is the ABI-versioned package that bookworm's
# linux-image-amd64 depended on when the harness was written. Debian removes an ABI from the archive
# some time after a newer one supersedes it. A machine that already has this package in its cache
# keeps working offline; a fresh machine fails with a message naming the ABI that linux-image-amd64
# points at now. Bumping the pin is then a one-line commit. We deliberately do not follow
# linux-image-amd64 silently, because a kernel change can change IPVS behaviour and timings.
KERNEL_PKG="${SWITCHYARD_VM_KERNEL_PKG:-linux-image-6.1.0-56-amd64}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/switchyard/vm"

log() { echo "vm-image: $*" >&2; }
die() { echo "vm-image: error: $*" >&2; exit 1; }

# Host packages: qemu and cpio run here; the rest are copied into the guest.
HOST_PKGS=(qemu-system-x86 busybox-static cpio xz-utils zstd iptables ipset conntrack iproute2 bash)

ensure_host_packages() {
	local missing=() p
	for p in "${HOST_PKGS[@]}"; do
		if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
			missing+=("$p")
		fi
	done
	[ "${#missing[@]}" -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "missing Debian packages ${missing[*]}; install them as root (apt-get install ${missing[*]})"
	log "installing ${missing[*]}"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
		apt-get update >&2 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
			die "apt-get install ${missing[*]} failed"
	fi
}

pkg_version() { dpkg-query -W -f='${Version}' "$1"; }

# fetch_kernel unpacks KERNEL_PKG under $CACHE/kernel/<pkg>_<version>/ and prints that directory.
# A previously unpacked version is reused without touching the network.
fetch_kernel() {
	local kdir=""
	kdir="$(find "$CACHE/kernel" -mindepth 1 -maxdepth 1 -type d -name "${KERNEL_PKG}_*" 2>/dev/null | sort -V | tail -n1 || true)"
	if [ -n "$kdir" ] && [ -f "$kdir/.complete" ]; then
		echo "${kdir%/}"
		return
	fi
	local tmp
	tmp="$(mktemp -d "$CACHE/dl.XXXXXX")"
	log "downloading $KERNEL_PKG"
	# As root, apt downloads as the _apt user, which cannot write under root's home; it would warn and
	# fall back. Sandbox::User=root asks for the fallback up front.
	if ! (cd "$tmp" && apt-get -o APT::Sandbox::User=root download "$KERNEL_PKG" >&2) &&
		! { apt-get update >&2 && (cd "$tmp" && apt-get -o APT::Sandbox::User=root download "$KERNEL_PKG" >&2); }; then
		local now
		now="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')"
		rm -rf "$tmp"
		die "cannot download $KERNEL_PKG (Debian may have dropped that ABI). linux-image-amd64 now depends on '${now:-unknown}': bump KERNEL_PKG in hack/vm/build-image.sh, or set SWITCHYARD_VM_KERNEL_PKG=${now:-<package>}"
	fi
	local deb ver
	deb="$(ls "$tmp"/*.deb)"
	ver="$(dpkg-deb -f "$deb" Version)"
	kdir="$CACHE/kernel/${KERNEL_PKG}_${ver}"
	rm -rf "$kdir"
	mkdir -p "$kdir"
	dpkg-deb -x "$deb" "$kdir/root"
	rm -rf "$tmp"
	local kver
	kver="$(ls "$kdir/root/lib/modules")"
	# The package ships no modules.dep (the host's postinst would make it). busybox's depmod writes
	# one that busybox's modprobe reads, plus modules.alias for on-demand loading.
	busybox depmod -b "$kdir/root" "$kver"
	touch "$kdir/.complete"
	echo "$kdir"
}

# Modules the guest loads at boot (all must exist), in load order. crc32c_generic comes first: the
# emulated CPU lacks SSE4.2, so crc32c-intel cannot serve libcrc32c, which nf_conntrack needs.
BOOT_MODULES=(
	crc32c_generic
	virtio_pci virtio_net virtio_rng
	nf_conntrack nf_nat
	ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_lblc ip_vs_lblcr ip_vs_dh ip_vs_sh ip_vs_sed
	ip_vs_nq ip_vs_fo ip_vs_ovf ip_vs_mh
	x_tables ip_tables ip6_tables iptable_nat iptable_filter iptable_mangle ip6table_nat ip6table_filter
	ip6table_mangle
	xt_comment xt_mark xt_addrtype xt_conntrack xt_set xt_MASQUERADE xt_statistic xt_recent
	xt_multiport ipt_REJECT ip6t_REJECT xt_nat xt_tcpudp
	nf_tables nft_compat nft_chain_nat nft_ct nft_nat nft_masq nft_reject_inet
	ip_set ip_set_hash_ip ip_set_hash_ipport ip_set_hash_ipportip ip_set_hash_ipportnet ip_set_hash_net
	ip_set_hash_netport ip_set_hash_netiface ip_set_bitmap_port
	nf_conntrack_netlink
	dummy veth bridge vxlan
)
# Modules copied in but loaded only when needed: 9p for run.sh --share.
EXTRA_MODULES=(9pnet_virtio 9p)
# Modules wanted when the kernel has them. ip_vs_twos arrived in Linux 6.7, after this 6.1 kernel.
OPTIONAL_MODULES=(ip_vs_twos)
# Whole directories copied as well, so that a rule needing some other match or target autoloads.
MODULE_DIRS=(kernel/net/netfilter kernel/net/ipv4/netfilter kernel/net/ipv6/netfilter kernel/net/bridge)

# copy_path copies a host file into the staging root at its canonical location and, when the name
# used differs (a symlink such as /usr/sbin/ip -> /bin/ip), recreates that name as a symlink.
copy_path() {
	local stage="$1" path="$2" real dir canon
	real="$(realpath "$path")"
	mkdir -p "$stage$(dirname "$real")"
	[ -e "$stage$real" ] || cp -L "$real" "$stage$real"
	dir="$(realpath "$(dirname "$path")")"
	canon="$dir/$(basename "$path")"
	if [ "$canon" != "$real" ] && [ ! -e "$stage$canon" ] && [ ! -L "$stage$canon" ]; then
		mkdir -p "$stage$dir"
		ln -s "$real" "$stage$canon"
	fi
}

# copy_with_libs copies an executable or shared object and every library ldd lists for it.
copy_with_libs() {
	local stage="$1" path="$2" lib
	copy_path "$stage" "$path"
	while read -r lib; do
		[ -n "$lib" ] && copy_path "$stage" "$lib"
	done < <(ldd "$path" 2>/dev/null | awk '/=> \//{print $3} /^[[:space:]]*\/[^ ]+ \(/{print $1}')
}

# extract_pvh_vmlinux unpacks the ELF kernel from the xz-compressed bzImage when the kernel can boot
# through the PVH entry point. qemu then starts it directly: under emulation this skips about 9 s of
# firmware and in-guest xz decompression on every boot. run.sh falls back to vmlinuz without it.
extract_pvh_vmlinux() {
	local boot="$1" kver="$2" out="$3" off
	grep -q '^CONFIG_PVH=y' "$boot/config-$kver" || { log "kernel has no PVH entry; booting the bzImage"; return 0; }
	# xz stops after its stream, so tail is fed through process substitution: in a pipeline its
	# SIGPIPE would fail the whole thing under pipefail.
	off="$(LC_ALL=C grep -m1 -obUaP '\xfd7zXZ\x00' "$boot/vmlinuz-$kver" | head -n1 | cut -d: -f1 || true)"
	if [ -z "$off" ] || ! xz -dcq --single-stream <(tail -c +"$((off + 1))" "$boot/vmlinuz-$kver") >"$out/vmlinux.tmp" ||
		[ "$(head -c4 "$out/vmlinux.tmp" | od -An -c | tr -d ' ')" != '177ELF' ]; then
		log "could not unpack an ELF vmlinux from vmlinuz-$kver; booting the bzImage"
		rm -f "$out/vmlinux.tmp"
		return 0
	fi
	mv "$out/vmlinux.tmp" "$out/vmlinux"
}

build_image() {
	local kdir="$1" out="$2" stage kver mods
	stage="$(mktemp -d "$CACHE/stage.XXXXXX")"
	STAGE="$stage"
	kver="$(ls "$kdir/root/lib/modules")"

	# Merged-/usr layout, like bookworm itself.
	mkdir -p "$stage"/usr/{bin,sbin,lib,lib64} "$stage"/{proc,sys,dev,run,tmp,root,etc,mnt,var,switchyard}
	ln -s usr/bin "$stage/bin"
	ln -s usr/sbin "$stage/sbin"
	ln -s usr/lib "$stage/lib"
	ln -s usr/lib64 "$stage/lib64"
	ln -s ../run "$stage/var/run"
	chmod 1777 "$stage/tmp"

	# Real tools first, so that busybox applet links below never shadow them.
	local t
	for t in /usr/bin/bash /usr/bin/ip /usr/sbin/ip /usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi \
		/usr/sbin/ipset /usr/sbin/conntrack; do
		copy_with_libs "$stage" "$t"
	done
	local so
	for so in /usr/lib/x86_64-linux-gnu/xtables/*.so; do
		copy_with_libs "$stage" "$so"
	done
	local fam v
	for fam in iptables ip6tables; do
		for v in "" -save -restore; do
			ln -sf xtables-nft-multi "$stage/usr/sbin/$fam-nft$v"
			ln -sf xtables-legacy-multi "$stage/usr/sbin/$fam-legacy$v"
			# The default variant is nft, as on a stock bookworm node.
			ln -sf xtables-nft-multi "$stage/usr/sbin/$fam$v"
		done
	done
	ln -sf bash "$stage/usr/bin/sh.bash"

	# busybox for everything else, including /sbin/modprobe (the kernel's on-demand loader).
	cp /bin/busybox "$stage/usr/bin/busybox"
	local applet
	while read -r applet; do
		applet="/${applet#/}"
		case "$applet" in /bin/* | /sbin/* | /usr/bin/* | /usr/sbin/*) ;; *) continue ;; esac
		local name="${applet##*/}"
		if [ ! -e "$stage/usr/bin/$name" ] && [ ! -e "$stage/usr/sbin/$name" ] && [ ! -L "$stage/usr/sbin/$name" ] &&
			[ ! -L "$stage/usr/bin/$name" ]; then
			ln -s /usr/bin/busybox "$stage/usr/bin/$name"
		fi
	done < <(busybox --list-full)
	[ -e "$stage/usr/sbin/modprobe" ] || ln -s /usr/bin/busybox "$stage/usr/sbin/modprobe"

	# /etc: ipset resolves "tcp" through /etc/protocols; iptables uses /etc/services for port names.
	cp /etc/protocols /etc/services "$stage/etc/"
	printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\nprotocols: files\nservices: files\n' \
		>"$stage/etc/nsswitch.conf"
	printf 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' \
		>"$stage/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$stage/etc/group"
	printf '127.0.0.1 localhost\n::1 localhost\n10.0.2.2 host\n' >"$stage/etc/hosts"
	echo switchyard-vm >"$stage/etc/hostname"

	# Kernel modules: the wanted ones, whole netfilter directories, and what modules.dep says they need.
	local mroot="$kdir/root/lib/modules/$kver" m path want=() missing=()
	for m in "${BOOT_MODULES[@]}" "${EXTRA_MODULES[@]}"; do
		path="$(awk -F: -v m="$m" '{n=$1; sub(/.*\//,"",n); sub(/\.ko.*$/,"",n); gsub(/-/,"_",n); if (n==m) {print $1; exit}}' "$mroot/modules.dep")"
		if [ -z "$path" ]; then
			grep -qE "/${m//_/[-_]}\.ko" "$mroot/modules.builtin" 2>/dev/null || missing+=("$m")
			continue
		fi
		want+=("$path")
	done
	[ "${#missing[@]}" -eq 0 ] || die "kernel $kver lacks modules: ${missing[*]}"
	local optional_loaded=()
	for m in "${OPTIONAL_MODULES[@]}"; do
		path="$(awk -F: -v m="$m" '{n=$1; sub(/.*\//,"",n); sub(/\.ko.*$/,"",n); if (n==m) {print $1; exit}}' "$mroot/modules.dep")"
		if [ -n "$path" ]; then want+=("$path"); optional_loaded+=("$m"); else log "kernel $kver has no $m; skipped"; fi
	done
	local d
	for d in "${MODULE_DIRS[@]}"; do
		while read -r path; do want+=("${path#"$mroot"/}"); done < <(find "$mroot/$d" -name '*.ko*')
	done
	# Close over dependencies with modules.dep.
	mods="$(printf '%s\n' "${want[@]}" | awk -v dep="$mroot/modules.dep" '
		BEGIN { while ((getline line < dep) > 0) { split(line, a, ":"); deps[a[1]] = a[2] } }
		{ queue[n++] = $1 }
		END {
			for (i = 0; i < n; i++) {
				m = queue[i]; if (m in seen) continue; seen[m] = 1; print m
				c = split(deps[m], ds, " ")
				for (j = 1; j <= c; j++) queue[n++] = ds[j]
			}
		}')"
	# Modules are stored uncompressed whatever the package ships (bookworm's 6.1 ships plain .ko;
	# newer Debian kernels ship .ko.xz or .ko.zst), so busybox's modprobe needs no decompressor.
	local dst
	while read -r path; do
		dst="$stage/lib/modules/$kver/${path%.ko*}.ko"
		mkdir -p "$(dirname "$dst")"
		case "$path" in
		*.ko) cp "$mroot/$path" "$dst" ;;
		*.ko.xz) xz -dc "$mroot/$path" >"$dst" ;;
		*.ko.zst) zstd -qdc "$mroot/$path" >"$dst" ;;
		*.ko.gz) gzip -dc "$mroot/$path" >"$dst" ;;
		*) die "unknown module compression: $path" ;;
		esac
	done <<<"$mods"
	cp "$mroot"/modules.builtin "$mroot"/modules.order "$stage/lib/modules/$kver/" 2>/dev/null || true
	busybox depmod -b "$stage" "$kver"
	printf '%s\n' "${BOOT_MODULES[@]}" "${optional_loaded[@]}" >"$stage/etc/switchyard-modules"

	install -m 0755 "$HERE/init.sh" "$stage/init"

	(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -1 >"$out/base.cpio.gz"
	cp "$kdir/root/boot/vmlinuz-$kver" "$out/vmlinuz"
	extract_pvh_vmlinux "$kdir/root/boot" "$kver" "$out"
	{
		echo "kernel_pkg=$KERNEL_PKG"
		echo "kernel_version=$kver"
		echo "modules=$(wc -l <<<"$mods")"
		echo "optional_modules=${optional_loaded[*]:-}"
	} >"$out/info"
	rm -rf "$stage"
}

STAGE=""
cleanup() { if [ -n "$STAGE" ]; then rm -rf "$STAGE"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

main() {
	mkdir -p "$CACHE"
	# One builder at a time per cache: parallel runs wait here, then find the image built.
	exec 9>"$CACHE/.lock"
	flock 9
	ensure_host_packages
	local kdir key out
	kdir="$(fetch_kernel)"
	# The image key covers everything that goes into it: the kernel, the copied host packages, and
	# this script and the guest init, so that editing either rebuilds.
	key="$({
		basename "$kdir"
		local p
		for p in "${HOST_PKGS[@]}"; do echo "$p=$(pkg_version "$p")"; done
		cat "$HERE/build-image.sh" "$HERE/init.sh"
	} | sha256sum | cut -c1-16)"
	out="$CACHE/image-$key"
	if [ ! -f "$out/.complete" ]; then
		log "building image $out"
		rm -rf "$out"
		mkdir -p "$out"
		build_image "$kdir" "$out"
		touch "$out/.complete"
	fi
	# Mark the image used, and drop images nobody has used for a week (older checkouts build others).
	touch "$out/.complete"
	local old
	for old in "$CACHE"/image-*; do
		if [ "$old" != "$out" ] && [ -n "$(find "$old/.complete" -mtime +7 2>/dev/null)" ]; then
			log "removing unused image $old"
			rm -rf "$old"
		fi
	done
	echo "$out"
}

main "$@"
