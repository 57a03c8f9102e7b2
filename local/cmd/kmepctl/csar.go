package main

import (
	"bufio"

	"github.com/spf13/cobra"

	"github.com/kmep-io/kmep/store/csar/csartest"
)

// newCSAR is the command that writes a small valid app package (a
// five-object Helm chart with an APPD carrying one traffic and one DNS
// rule) to stdout, for trying the package and instantiate APIs.
func newCSAR(d deps) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "csar [--name demo] > demo.csar",
		Short: "write a small valid app package (CSAR) to stdout",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			w := bufio.NewWriter(d.stdout)
			if err := csartest.Write(w, csartest.Options{Name: name}); err != nil {
				return err
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&name, "name", "demo", "the chart's and app's `name`")
	return cmd
}
