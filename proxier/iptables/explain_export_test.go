package iptables

// For the explain benchmark in package iptables_test, which times the walk apart from the parse.

// ExplainRules is Explain on rules already parsed.
var ExplainRules = explainRules
