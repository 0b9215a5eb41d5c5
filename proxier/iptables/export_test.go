package iptables

// For the behaviour tests in package iptables_test, which drive the backend from outside.

// AddService adds svc, with its defaults filled in, and eps to s, and marks it changed.
var AddService = addService
