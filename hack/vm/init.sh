#!/usr/bin/busybox sh
# shellcheck shell=dash
# PID 1 of the test VM (installed as /init in the initramfs by build-image.sh).
#
# Two serial ports: ttyS0 is the kernel console, which the host writes to a log file; ttyS1 carries
# only the program's output and two marker lines, "<nonce> ready <uptime> <init-start>" and "<nonce> exit <code>",
# which run.sh strips. The nonce is random per run, so program output cannot fake a marker.
#
# busybox's shell may run its own applets ahead of PATH, so everything here names its tool by full
# path: busybox applets through $BB, iproute2 as /usr/bin/ip.

BB=/usr/bin/busybox
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb

$BB mount -t proc proc /proc
read -r INIT_START _ </proc/uptime
$BB mount -t sysfs sysfs /sys
$BB mount -t devtmpfs devtmpfs /dev
$BB mkdir -p /dev/pts /dev/shm
$BB mount -t devpts devpts /dev/pts
$BB mount -t tmpfs -o mode=1777 tmpfs /dev/shm
$BB mount -t tmpfs -o mode=0755 tmpfs /run
$BB mount -t tmpfs -o mode=1777 tmpfs /tmp
$BB mkdir -p /run/netns /run/lock

OUT=/dev/ttyS1
NONCE="$($BB cat /switchyard/nonce 2>/dev/null)"
# Raw mode: the program's bytes reach the host unchanged (no \n -> \r\n).
$BB stty -F $OUT raw -echo 2>/dev/null

finish() {
	$BB sync
	$BB poweroff -f
	# poweroff -f does not return; if it somehow does, make the kernel panic (and qemu exit).
	exit 1
}

setup_failed() {
	echo "switchyard-vm: guest setup failed: $*" >$OUT
	echo "$NONCE setup-failed" >$OUT
	finish
}

[ -n "$NONCE" ] || setup_failed "no /switchyard/nonce in the initramfs"
[ -f /switchyard/run.sh ] || setup_failed "no /switchyard/run.sh in the initramfs"

# The kernel runs this for modules it wants on demand (netfilter matches, IPVS by genetlink alias).
echo /sbin/modprobe >/proc/sys/kernel/modprobe
# One modprobe for the whole list: under emulation each exec costs tens of milliseconds. On failure,
# go one by one to name the module that failed.
MODULES="$($BB cat /etc/switchyard-modules)"
# shellcheck disable=SC2086 # one word per module
if ! $BB modprobe -a $MODULES; then
	for m in $MODULES; do
		$BB modprobe "$m" || setup_failed "modprobe $m failed"
	done
fi

$BB hostname -F /etc/hostname
/usr/bin/ip link set lo up || setup_failed "lo up"
# slirp (-netdev user): the host's loopback answers at 10.0.2.2, its DNS forwarder at 10.0.2.3.
if [ -e /sys/class/net/eth0 ]; then
	if ! { /usr/bin/ip link set eth0 up &&
		/usr/bin/ip addr add 10.0.2.15/24 dev eth0 &&
		/usr/bin/ip route add default via 10.0.2.2 dev eth0; }; then
		setup_failed "eth0 configuration"
	fi
	echo "nameserver 10.0.2.3" >/etc/resolv.conf
fi

# Host directories shared with run.sh --share: one "tag guest-dir" line each.
if [ -s /switchyard/shares ]; then
	$BB modprobe -a 9pnet_virtio 9p || setup_failed "modprobe 9p"
	while read -r tag dir; do
		if ! { $BB mkdir -p "$dir" &&
			$BB mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 "$tag" "$dir"; }; then
			setup_failed "mount host share $tag on $dir"
		fi
	done </switchyard/shares
fi

read -r UPTIME _ </proc/uptime
echo "$NONCE ready $UPTIME $INIT_START" >$OUT

/usr/bin/bash /switchyard/run.sh </dev/null >$OUT 2>&1
RC=$?

echo "$NONCE exit $RC" >$OUT
finish
