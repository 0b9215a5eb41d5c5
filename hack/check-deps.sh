#!/usr/bin/env bash
# Fails when the tree runs a program that a fresh machine would not have: one that neither comes with
# every Debian install (priority required), nor with the Go toolchain, nor is installed
# by hack/install-deps.sh, nor is built by the tree itself. `make test` runs it after install-deps, so
# a package installed by hand on the machine that runs CI can no longer hide a missing install step.
#
# What counts as "run": every Go string literal that is one bare word (exec.Command names, argv
# slices) and the command word of every command in the shell scripts, Makefile and manifest scripts,
# when that word names an executable on PATH. A word that names no executable here cannot be told apart from plain text, so
# two more checks cover a program that is missing altogether: the first argument of every
# exec.Command, exec.CommandContext and exec.LookPath must be installed or built, and so must every
# program listed in EXTERNAL below.
#
# Usage: hack/check-deps.sh [-v]      -v lists every program found and where it comes from.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
verbose=0
[[ "${1:-}" == -v ]] && verbose=1

# What a fresh machine has besides Debian's required packages: the Go toolchain (checked
# by its path below), and git and make, without which there is no clone and no `make test`.
BASE_PACKAGES=(git make)

# Words that name a program on PATH but are used as something else: "word: what it is".
NOT_PROGRAMS=(
	"cc: a test namespace's name (podnet/overlay_privileged_test.go)"
	"ul: a test namespace's name, the underlay (podnet/overlay_privileged_test.go)"
	"wget: busybox's applet inside the qemu VM (hack/vm/selftest.sh), not the host's"
	"node: a log key and a flag name"
	"patch: an RBAC verb"
	"idle: a word in flag names (--idle-gap)"
	"strings: pflag's name for a string-list flag type (cmd/switchyard/kubeproxy_flags_test.go)"
	"file: a file name in a test path (cmd/switchyard/kubeproxy_flags_test.go)"
	"write: an os.PathError's Op in a test (proxier/conntrack/sysctl_test.go)"
	"route: an argument of ip (ip route), not net-tools' route"
)

# Programs the tree runs only when they are there, and does without otherwise: "program: why".
OPTIONAL=(
	"kubectl: make demo prints a kubectl hint only when kubectl is installed (hack/demo/report.go)"
)

# Programs run by binaries this tree does not own (upstream kube-proxy and kube-apiserver, BIRD), which
# no word of ours names in a way the scan below can see: "program: who runs it".
EXTERNAL=(
	"nft: upstream kube-proxy v1.31+ (its --cleanup and nftables mode)"
	"etcd: the local control plane (hack/lib/controlplane.sh)"
)

# Built by the tree: the commands under cmd/ and e2e/ (make build, the e2e harness) and the upstream
# binaries hack/k8s/build.sh builds from the Go module proxy.
built=" $(find cmd e2e hack -name main.go -printf '%h\n' 2>/dev/null | xargs -r -n1 basename | tr '\n' ' ')"
built+=" $(sed -n 's/^DEFAULT_BINARIES=(\(.*\))/\1/p' hack/k8s/build.sh) "

# Packages hack/install-deps.sh installs, and the ones every Debian install has.
deps=" $(hack/install-deps.sh --list | tr '\n' ' ') "
base=" ${BASE_PACKAGES[*]} $(dpkg-query -W -f='${Package} ${Priority}\n' | awk '$2 == "required" {print $1}' | tr '\n' ' ') "

# Go: bare-word string literals and exec's program arguments ("!" marks the latter); shell scripts,
# the Makefile and the manifests' scripts: the word in command position (hack/check-deps lists them).
golist=$(go run ./hack/check-deps $(git ls-files '*.go' '*.sh' Makefile .ci/run 'deploy/*.yaml'))
execs=$(sed -n 's/^!//p' <<<"$golist")
words=$(
	{
		grep -v '^!' <<<"$golist"
	} | sort -u
)

fail=()
declare -A pathOf
skip=" $(printf '%s\n' "${NOT_PROGRAMS[@]}" "${OPTIONAL[@]}" | sed 's/:.*//' | tr '\n' ' ') "
for w in $words; do
	[[ ${#w} -lt 2 || "$skip" == *" $w "* ]] && continue
	p=$(type -P "$w" 2>/dev/null) || continue
	pathOf[$w]=$(readlink -f "$p")
done
for e in "${EXTERNAL[@]}"; do
	w=${e%%:*}
	if p=$(type -P "$w" 2>/dev/null); then
		pathOf[$w]=$(readlink -f "$p")
	else
		fail+=("$w is not installed (needed by${e#*:})")
	fi
done
for w in $execs; do
	if [[ "$w" == /* && -x "$w" ]]; then
		pathOf[$w]=$(readlink -f "$w") # an absolute path (/bin/sh): its package is checked below
		continue
	fi
	[[ -n "${pathOf[$w]:-}" || "$built" == *" $w "* || "$skip" == *" $w "* ]] && continue
	fail+=("$w is executed by Go code but neither installed nor built by the tree")
done

# One dpkg -S for every path. Debian bookworm is merged-/usr, so a file dpkg knows as /bin/x is
# found on PATH as /usr/bin/x: ask for both spellings.
declare -A pkgOf
if ((${#pathOf[@]})); then
	mapfile -t paths < <(printf '%s\n' "${pathOf[@]}" | sort -u)
	query=()
	for p in "${paths[@]}"; do
		query+=("$p")
		[[ "$p" == /usr/* ]] && query+=("${p#/usr}")
	done
	while IFS= read -r line; do
		pkg=${line%%: *}
		file=${line#*: }
		[[ "$line" == diversion* || "$pkg" == "$line" ]] && continue
		pkgOf[$file]=${pkg%%:*}
		pkgOf[/usr$file]=${pkg%%:*}
	done < <(dpkg -S "${query[@]}" 2>/dev/null || true)
fi

repo=$(pwd)
goroot=$(go env GOROOT 2>/dev/null || echo /usr/local/go)
for w in $(printf '%s\n' "${!pathOf[@]}" | sort); do
	p=${pathOf[$w]}
	pkg=${pkgOf[$p]:-}
	if [[ -z "$pkg" ]]; then
		case "$p" in
		"$goroot"/* | "$repo"/* | */.cache/switchyard/*) from="the Go toolchain or the tree's own build" ;;
		*) fail+=("$w ($p) comes from no Debian package: install it through hack/install-deps.sh or build it in the tree"); continue ;;
		esac
	elif [[ "$deps" == *" $pkg "* ]]; then
		from="hack/install-deps.sh ($pkg)"
	elif [[ "$base" == *" $pkg "* ]]; then
		from="every Debian install ($pkg)"
	else
		fail+=("$w ($p) comes from Debian's $pkg, which is installed on this machine but not by hack/install-deps.sh")
		continue
	fi
	((verbose)) && printf '%-28s %s\n' "$w" "$from"
done

if ((${#fail[@]})); then
	echo "check-deps: a fresh machine (Debian bookworm and Go) would lack what the tree runs:" >&2
	printf '  - %s\n' "${fail[@]}" >&2
	echo "Add the package to hack/install-deps.sh (or, for a false match, change the word)." >&2
	exit 1
fi
echo "check-deps: every program the tree runs is installed by hack/install-deps.sh, built by the tree, or part of every Debian install (${#pathOf[@]} programs)"
