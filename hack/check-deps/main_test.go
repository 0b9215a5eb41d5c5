package main

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
)

func TestShellCommandsFindsProgramsNotMessages(t *testing.T) {
	script := `#!/bin/sh
# comment: kubectl apply
modprobe br_netfilter 2>/dev/null || [ -d /sys/module/x ] ||
  echo "kernel-setup: modprobe failed and the node says so"
if jq -r . f | sort -u; then out=$(nft list tables); fi
FOO=1 socat - UNIX:x & ! timeout 5 true
patch: |-
xargs -r rm -f
`
	path := filepath.Join(t.TempDir(), "s.sh")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	words := map[string]bool{}
	if err := shellCommands(path, words); err != nil {
		t.Fatal(err)
	}
	var got []string
	for w := range words {
		got = append(got, w)
	}
	sort.Strings(got)
	// "patch:" is a YAML key (not a bare word); the echo's message, the comment and arguments are not
	// commands. "[" is the test builtin. timeout's argument is not looked past: a program it runs is
	// missed, which the Go scan and EXTERNAL list cover where it matters.
	want := []string{"echo", "jq", "modprobe", "nft", "rm", "socat", "sort", "timeout"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("commands = %q, want %q", got, want)
	}
}
