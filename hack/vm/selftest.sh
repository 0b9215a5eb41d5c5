#!/usr/bin/env bash
# Proves the VM harness: boots the guest, checks IPVS, dummy devices, netns, iptables (nft and
# legacy), ipset and conntrack inside it (selftest/checks.sh), checks that the guest reaches a
# server on this machine's loopback through 10.0.2.2, and that a file written to a --share
# directory reaches the host. With --go it also runs the Go test binary of e2e/vmselftest, which drives
# IPVS over netlink and sends a TCP connection through a virtual server.
#
# Usage: hack/vm/selftest.sh [--go]
# Prints boot and total times on stderr; exits non-zero when any check fails.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUN_GO=0
[ "${1:-}" = --go ] && RUN_GO=1

# Builds the image and installs the host packages (busybox among them) before anything uses them.
"$HERE/build-image.sh" >/dev/null

WORK="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-vm-selftest.XXXXXX")"
HTTPD_PID=""
cleanup() {
	if [ -n "$HTTPD_PID" ]; then kill "$HTTPD_PID" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT

# A one-file web server on 127.0.0.1 only; the guest fetches its token through 10.0.2.2.
mkdir -p "$WORK/www" "$WORK/share"
TOKEN="token-$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
echo "$TOKEN" >"$WORK/www/token"
PORT=""
for _ in 1 2 3 4 5; do
	p=$((20000 + RANDOM % 20000))
	busybox httpd -f -p "127.0.0.1:$p" -h "$WORK/www" &
	HTTPD_PID=$!
	sleep 0.3
	if kill -0 "$HTTPD_PID" 2>/dev/null; then PORT=$p; break; fi
	HTTPD_PID=""
done
[ -n "$PORT" ] || { echo "selftest: could not start a loopback web server" >&2; exit 1; }

cat >"$WORK/guest.sh" <<EOF
#!/usr/bin/bash
/usr/bin/bash /switchyard/checks.sh
rc=\$?
if [ "\$(busybox wget -q -O - http://10.0.2.2:$PORT/token)" = "$TOKEN" ]; then
	echo "ok   guest reaches the host's loopback at 10.0.2.2"
else
	echo "FAIL guest reaches the host's loopback at 10.0.2.2"
	rc=1
fi
# Hand the token back through the 9p share (run.sh --share); the host checks it after the VM exits.
echo "$TOKEN" >/switchyard/share/token-back || rc=1
exit \$rc
EOF

START=$(date +%s)
echo "selftest: kernel features and tools" >&2
"$HERE/run.sh" -v --timeout 600 \
	--files "$HERE/selftest/checks.sh:/switchyard/checks.sh" \
	--files "$WORK/guest.sh:/switchyard/guest.sh" \
	--share "$WORK/share:/switchyard/share" \
	/bin/busybox sh /switchyard/guest.sh
if [ "$(cat "$WORK/share/token-back" 2>/dev/null)" = "$TOKEN" ]; then
	echo "ok   guest writes a file the host reads through --share (9p)"
else
	echo "FAIL guest writes a file the host reads through --share (9p)"
	exit 1
fi

if [ "$RUN_GO" = 1 ]; then
	echo "selftest: Go test binary (IPVS over netlink, TCP through a virtual server)" >&2
	(cd "$HERE/../.." && CGO_ENABLED=0 go test -c -tags vmselftest -o "$WORK/selftest.test" ./e2e/vmselftest)
	"$HERE/run.sh" -v --timeout 900 --env SWITCHYARD_PRIVILEGED=1 "$WORK/selftest.test" -test.v -test.count=1
fi
echo "selftest: passed in $(($(date +%s) - START))s" >&2
