#!/usr/bin/env bash
# Runs `switchyard bench --apply` inside the qemu VM of hack/vm, whose Debian kernel has IPVS, so that
# both backends are applied to a real kernel (this machine's kernel has no IPVS). Results come back
# through a shared directory.
#
# Usage: hack/bench-in-vm.sh [--out DIR] [--mem MB] [-- BENCH-FLAGS...]
#   --out DIR   where the results go (default bench-results/vm): bench.json, bench.md, bench.svg and
#               the terminal table, bench.txt
#   --mem MB    guest memory (default 4096)
#   BENCH-FLAGS are passed to `switchyard bench` (default: --sizes 100,1000,5000 --connects 200)
#
# The guest's CPU is emulated (TCG, no KVM): its wall times are several times the host's, so compare
# backends within one run, never a VM figure with a host figure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${ROOT}/bench-results/vm"
MEM=4096
while [ $# -gt 0 ]; do
	case "$1" in
	--out) OUT="${2:?--out needs a directory}"; shift 2 ;;
	--mem) MEM="${2:?--mem needs a value}"; shift 2 ;;
	--) shift; break ;;
	-h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
	*) echo "bench-in-vm: unknown option $1" >&2; exit 2 ;;
	esac
done
BENCH_FLAGS=("$@")
[ ${#BENCH_FLAGS[@]} -gt 0 ] || BENCH_FLAGS=(--sizes "100,1000,5000" --connects 200)

mkdir -p "${OUT}"
OUT="$(cd "${OUT}" && pwd)"
BIN="$(mktemp -d)"
trap 'rm -rf "${BIN}"' EXIT
echo "bench-in-vm: building a static switchyard" >&2
(cd "${ROOT}" && CGO_ENABLED=0 go build -o "${BIN}/switchyard" ./cmd/switchyard)

# run.sh merges the program's stdout and stderr, so the report goes to a file in the shared directory
# and the progress lines stream to the terminal.
"${ROOT}/hack/vm/run.sh" --mem "${MEM}" --timeout 3600 --share "${OUT}:/out" \
	"${BIN}/switchyard" bench --apply --iptables-variant both \
	--output json --output-file /out/bench.json --plot /out/bench.svg "${BENCH_FLAGS[@]}"
# The other formats are rendered from the same figures, without measuring again.
"${BIN}/switchyard" bench --input "${OUT}/bench.json" --output markdown --output-file "${OUT}/bench.md"
"${BIN}/switchyard" bench --input "${OUT}/bench.json" --output table | tee "${OUT}/bench.txt"
echo "bench-in-vm: results in ${OUT}" >&2
