#!/usr/bin/env bash
# Runs a statically linked program as root inside a throwaway qemu VM whose Debian kernel has IPVS,
# dummy devices and the rest of netfilter as modules (this machine's kernel has neither IPVS nor
# dummy). The program's output streams to stdout and run.sh exits with the program's exit code.
#
# Usage: hack/vm/run.sh [options] BINARY [ARGS...]
#   --mem MB           guest memory (default 2048)
#   --smp N            guest CPUs (default 2)
#   --timeout SECS     kill qemu and fail after this long (default 1800)
#   --env K=V          set K=V for the program (repeatable)
#   --files SRC:DST    copy host file or directory SRC to DST in the guest (repeatable)
#   --share HOST:GUEST mount host directory HOST read-write at GUEST over 9p (repeatable), e.g. to
#                      get files the program writes back out
#   --cwd DIR          run the program in guest directory DIR (default /root)
#   --console FILE     keep the guest's kernel console log in FILE
#   -v, --verbose      print boot timing and the image in use to stderr
#
# Exit status: the program's, or 124 when the timeout hit, or 125 when the VM itself failed (the
# tail of the kernel console is then printed to stderr).
#
# Emulation is software only (TCG): no KVM here. The guest reaches this machine's loopback at
# 10.0.2.2 through qemu's user-mode network, which adds nothing to the host's network namespace.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2; exit 2; }
die() { echo "vm: error: $*" >&2; exit 125; }

MEM=2048
SMP=2
TIMEOUT=1800
CWD=/root
CONSOLE=""
VERBOSE=0
ENVS=()
FILES=()
SHARES=()
while [ $# -gt 0 ]; do
	case "$1" in
	--mem) MEM="${2:?--mem needs a value}"; shift 2 ;;
	--smp) SMP="${2:?--smp needs a value}"; shift 2 ;;
	--timeout) TIMEOUT="${2:?--timeout needs a value}"; shift 2 ;;
	--env) ENVS+=("${2:?--env needs K=V}"); shift 2 ;;
	--files) FILES+=("${2:?--files needs SRC:DST}"); shift 2 ;;
	--share) SHARES+=("${2:?--share needs HOST:GUEST}"); shift 2 ;;
	--cwd) CWD="${2:?--cwd needs a directory}"; shift 2 ;;
	--console) CONSOLE="${2:?--console needs a file}"; shift 2 ;;
	-v | --verbose) VERBOSE=1; shift ;;
	-h | --help) usage ;;
	--) shift; break ;;
	-*) echo "vm: unknown option $1" >&2; usage ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] || usage
BINARY="$1"
shift

[[ "$MEM" =~ ^[0-9]+$ ]] || die "--mem must be a number of MB, got '$MEM'"
[[ "$SMP" =~ ^[0-9]+$ ]] || die "--smp must be a number, got '$SMP'"
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds, got '$TIMEOUT'"
if [ ! -f "$BINARY" ] || [ ! -x "$BINARY" ]; then die "$BINARY is not an executable file"; fi
[ "$(head -c4 "$BINARY" | od -An -c | tr -d ' ')" = '177ELF' ] || die "$BINARY is not an ELF executable"
if ldd "$BINARY" >/dev/null 2>&1; then
	die "$BINARY is dynamically linked; build it with CGO_ENABLED=0 (the guest has no Go toolchain libraries)"
fi

# Check every option before the (possibly slow) image build.
for kv in "${ENVS[@]+"${ENVS[@]}"}"; do
	k="${kv%%=*}"
	if [ "$k" = "$kv" ] || [[ ! "$k" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then die "--env wants K=V with a valid name, got '$kv'"; fi
done
for f in "${FILES[@]+"${FILES[@]}"}"; do
	if [ "${f%%:*}" = "$f" ] || [ -z "${f%%:*}" ] || [[ "${f#*:}" != /* ]]; then die "--files wants SRC:/absolute/DST, got '$f'"; fi
	[ -e "${f%%:*}" ] || die "--files source ${f%%:*} does not exist"
done
for sh in "${SHARES[@]+"${SHARES[@]}"}"; do
	if [ "${sh%%:*}" = "$sh" ] || [ ! -d "${sh%%:*}" ] || [[ "${sh#*:}" != /* ]] || [[ "${sh#*:}" =~ [[:space:]] ]]; then
		die "--share wants HOSTDIR:/absolute/guest/dir (an existing host directory, no spaces), got '$sh'"
	fi
done

IMAGE="$("$HERE/build-image.sh")" || die "building the VM image failed"
# The bare ELF kernel boots through PVH and skips firmware and decompression; see build-image.sh.
KERNEL="$IMAGE/vmlinuz"
if [ -f "$IMAGE/vmlinux" ]; then KERNEL="$IMAGE/vmlinux"; fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-vm.XXXXXX")"
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	# qemu writes its pid file once it runs; kill exactly that process if we are stopped early.
	if [ -s "$WORK/qemu.pid" ]; then kill "$(cat "$WORK/qemu.pid")" 2>/dev/null || true; fi
	if [ -n "${PIPE_PID:-}" ]; then wait "$PIPE_PID" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The per-run archive: nonce, program, files and a bash script that sets up the environment and
# execs the program. It is appended, uncompressed, to the cached base initramfs; the kernel unpacks
# concatenated archives in order.
RUNROOT="$WORK/root"
mkdir -p "$RUNROOT/switchyard/bin"
NONCE="SYVM-$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')"
echo "$NONCE" >"$RUNROOT/switchyard/nonce"
BASENAME="$(basename "$BINARY")"
cp "$BINARY" "$RUNROOT/switchyard/bin/$BASENAME"
chmod 0755 "$RUNROOT/switchyard/bin/$BASENAME"
for f in "${FILES[@]+"${FILES[@]}"}"; do
	src="${f%%:*}"
	dst="${f#*:}"
	mkdir -p "$RUNROOT$(dirname "$dst")"
	cp -a "$src" "$RUNROOT$dst"
done
QEMU_SHARES=()
i=0
for sh in "${SHARES[@]+"${SHARES[@]}"}"; do
	host="${sh%%:*}"
	guest="${sh#*:}"
	# security_model=none: the guest's root writes files as the user running qemu, with no xattr mapping.
	QEMU_SHARES+=(-virtfs "local,path=$(realpath "$host"),mount_tag=share$i,security_model=none,id=share$i")
	echo "share$i $guest" >>"$RUNROOT/switchyard/shares"
	i=$((i + 1))
done
{
	echo '#!/usr/bin/bash'
	printf 'mkdir -p %q && cd %q || exit 125\n' "$CWD" "$CWD"
	for kv in "${ENVS[@]+"${ENVS[@]}"}"; do
		printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
	done
	printf 'exec %q' "/switchyard/bin/$BASENAME"
	for a in "$@"; do printf ' %q' "$a"; done
	echo
} >"$RUNROOT/switchyard/run.sh"
(cd "$RUNROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$WORK/run.cpio"
# The kernel only recognises an uncompressed archive that starts at a 4-byte-aligned offset, so
# pad the compressed base with zeros (which it skips) up to the next multiple of 4.
BASE_SIZE="$(stat -c %s "$IMAGE/base.cpio.gz")"
{
	cat "$IMAGE/base.cpio.gz"
	head -c $(((4 - BASE_SIZE % 4) % 4)) /dev/zero
	cat "$WORK/run.cpio"
} >"$WORK/initrd"

LOG="${CONSOLE:-$WORK/console.log}"
: >"$LOG"
RESULT="$WORK/result"
READY="$WORK/ready"

console_tail() {
	echo "vm: last lines of the guest console ($LOG):" >&2
	tail -n 40 "$LOG" | tr -d '\r' | sed 's/^/  | /' >&2
}

# mawk (Debian's default awk) reads a pipe in large blocks unless told it is interactive, which would
# hold the program's output back until the VM exits.
AWK=(awk)
# (Not `awk -W version | grep -q`: grep's early exit can SIGPIPE awk and fail that under pipefail.)
case "$(awk -W version 2>&1 || true)" in *mawk*) AWK=(awk -W interactive) ;; esac

START="$(date +%s.%N)"
# qemu writes the program's serial port to its stdout. The filter passes program bytes through,
# line by line, and turns the marker lines into files. A marker may follow program output that did
# not end in a newline, so it is matched anywhere in the line.
# The pipeline runs in the background so that a signal to run.sh is handled at once (bash defers
# traps until a foreground pipeline ends) and the trap can stop qemu.
# shellcheck disable=SC2016 # the $ signs below belong to awk
(
set +e
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 -pidfile "$WORK/qemu.pid" \
	-accel tcg -machine pc -smp "$SMP" -m "$MEM" \
	-nodefaults -no-user-config -display none -no-reboot \
	-kernel "$KERNEL" -initrd "$WORK/initrd" \
	-append "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off tsc=reliable rdinit=/init" \
	-serial "file:$LOG" \
	-chardev stdio,id=prog,signal=off -serial chardev:prog \
	-netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
	-device virtio-rng-pci \
	"${QEMU_SHARES[@]+"${QEMU_SHARES[@]}"}" \
	</dev/null | "${AWK[@]}" -v nonce="$NONCE" -v result="$RESULT" -v ready="$READY" '
	{
		i = index($0, nonce)
		if (i == 0) { print; fflush(); next }
		if (i > 1) { printf "%s", substr($0, 1, i - 1); fflush() }
		n = split(substr($0, i + length(nonce) + 1), f, " ")
		if (f[1] == "ready") {
			system("date +%s.%N > " ready)
			print f[2] " " f[3] >> ready; close(ready)
		} else if (f[1] == "exit" || f[1] == "setup-failed") {
			print f[1] " " f[2] > result; close(result)
		}
	}'
echo "${PIPESTATUS[0]}" >"$WORK/qemu-status"
) &
PIPE_PID=$!
wait "$PIPE_PID" || true
PIPE_PID=""
QEMU_STATUS="$(cat "$WORK/qemu-status" 2>/dev/null || echo unknown)"
END="$(date +%s.%N)"

if [ "$VERBOSE" = 1 ] || [ ! -s "$RESULT" ]; then
	if [ -s "$READY" ]; then
		{ read -r ready_at; read -r guest_uptime init_start; } <"$READY"
		awk -v s="$START" -v r="$ready_at" -v e="$END" -v u="$guest_uptime" -v i="$init_start" -v img="$IMAGE" 'BEGIN {
			printf "vm: image %s\nvm: guest ready %.1fs after qemu start (kernel to /init %.1fs, modules and network %.1fs); program %.1fs; total %.1fs\n",
				img, r - s, i, u - i, e - r, e - s }' >&2
	fi
fi

if [ "$QEMU_STATUS" = 124 ] || [ "$QEMU_STATUS" = 137 ]; then
	echo "vm: error: timed out after ${TIMEOUT}s; qemu killed" >&2
	console_tail
	exit 124
fi
if [ ! -s "$RESULT" ]; then
	echo "vm: error: the guest stopped without reporting an exit code (qemu status $QEMU_STATUS)" >&2
	console_tail
	exit 125
fi
read -r kind code <"$RESULT"
if [ "$kind" = setup-failed ]; then
	echo "vm: error: guest setup failed (see the line above)" >&2
	console_tail
	exit 125
fi
[[ "$code" =~ ^[0-9]+$ ]] || die "malformed exit marker '$kind $code'"
exit "$code"
