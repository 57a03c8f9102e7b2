package main

import (
	"bufio"

	"github.com/spf13/cobra"

	"github.com/kmep-io/kmep/store/csar/csartest"
)

// newCSAR is the command that writes a small valid app package (a
// five-object Helm chart with an APPD carrying one traffic and one DNS
// rule; with --mep-agent-image a sixth, the sidecar's ConfigMap) to
// stdout, for trying the package and instantiate APIs.
func newCSAR(d deps) *cobra.Command {
	var name, image, agent string
	cmd := &cobra.Command{
		Use:   "csar [--name demo] > demo.csar",
		Short: "write a small valid app package (CSAR) to stdout",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			w := bufio.NewWriter(d.stdout)
			if err := csartest.Write(w, csartest.Options{Name: name, Image: image, MepAgentImage: agent}); err != nil {
				return err
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&name, "name", "demo", "the chart's and app's `name`")
	cmd.Flags().StringVar(&image, "image", "", "the app container's `image` (default registry.local/NAME:1.0)")
	cmd.Flags().StringVar(&agent, "mep-agent-image", "", "add kmep's mep-agent as a sidecar with this `image`: it registers a service named after the release and heartbeats it")
	return cmd
}
