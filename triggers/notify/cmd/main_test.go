package main

import (
	"strings"
	"testing"
)

// readConfig reads KMEP_CALLBACK_DENY into the callback policy's deny list
// and refuses a malformed one, naming it.
func TestReadConfigCallbackDeny(t *testing.T) {
	t.Setenv("KMEP_CALLBACK_DENY", "10.0.0.0/8, fd00::/8")
	c, err := readConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.deny) != 2 || c.deny[0].String() != "10.0.0.0/8" || c.deny[1].String() != "fd00::/8" {
		t.Fatalf("deny = %v", c.deny)
	}
	t.Setenv("KMEP_CALLBACK_DENY", "internal.example")
	if _, err := readConfig(); err == nil || !strings.Contains(err.Error(), "KMEP_CALLBACK_DENY") {
		t.Fatalf("readConfig with a host name in KMEP_CALLBACK_DENY: %v", err)
	}
}
