package server_test

import (
	"os/exec"
	"strings"
	"testing"
)

// Binaries that need neither Helm, client-go nor libp2p must not link them:
// their package init alone costs tens of milliseconds of cold start.
func TestLightBinariesDoNotLinkHeavyModules(t *testing.T) {
	heavy := []string{"helm.sh/helm", "k8s.io/client-go", "k8s.io/apimachinery", "github.com/libp2p/", "knative.dev/"}
	for _, pkg := range []string{
		"github.com/kmep-io/kmep/functions/token/cmd",
		"github.com/kmep-io/kmep/functions/services/cmd",
		"github.com/kmep-io/kmep/functions/subscriptions/cmd",
		"github.com/kmep-io/kmep/functions/appsupport/cmd",
		"github.com/kmep-io/kmep/functions/lcm/cmd",
		"github.com/kmep-io/kmep/functions/packages/cmd",
		"github.com/kmep-io/kmep/triggers/notify/cmd",
		"github.com/kmep-io/kmep/triggers/deadletter/cmd",
		"github.com/kmep-io/kmep/longrunning/relay/cmd",
		"github.com/kmep-io/kmep/longrunning/mepagent/cmd",
		"github.com/kmep-io/kmep/longrunning/reaper/cmd",
		"github.com/kmep-io/kmep/local/cmd/kmepctl",
	} {
		t.Run(pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list: %v\n%s", err, out)
			}
			deps := strings.Fields(string(out))
			if len(deps) < 10 {
				t.Fatalf("implausibly few deps (%d): %v", len(deps), deps)
			}
			for _, d := range deps {
				for _, h := range heavy {
					if strings.HasPrefix(d, h) {
						t.Errorf("%s links %s", pkg, d)
					}
				}
			}
		})
	}
}
