package iptables

import "strings"

// isOwnedChain reports whether some part of Switchyard created the chain (any SY- chain). Only tests
// need the broad check: the code itself removes either its own mode's chains (isModeChain) or, for
// --cleanup, reads every SY- chain out of iptables-save.
func isOwnedChain(name string) bool { return strings.HasPrefix(name, chainPrefix) }
