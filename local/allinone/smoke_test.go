package allinone_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/kmep-io/kmep/local/allinone"
)

// TestClusterSmokeWalkthrough runs the cluster path's smoke script
// (local/cluster/smoke.sh, what make smoke runs through the local
// cluster's base URL) against the all-in-one: the walkthrough it checks is
// the platform's, whichever way it is deployed.
func TestClusterSmokeWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("SKIPPED: smoke.sh needs curl")
	}
	base, logs := platform(t, allinone.Config{})
	cmd := exec.Command("bash", "local/cluster/smoke.sh")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "KMEP_URL="+base, "KMEP_ADMIN_TOKEN="+admin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("smoke.sh: %v\n%s\nplatform log:\n%s", err, out, logs.String())
	}
	t.Logf("%s", out)
}
