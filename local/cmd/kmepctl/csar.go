package main

import (
	"bufio"

	"github.com/kmep-io/kmep/store/csar/csartest"
)

// runCSAR writes a small valid app package (a five-object Helm chart with
// an APPD carrying one traffic and one DNS rule) to stdout, for trying the
// package and instantiate APIs.
func runCSAR(args []string, d deps) int {
	fs := newFlagSet("csar", d)
	name := fs.String("name", "demo", "the chart's and app's name")
	if code, done := parse(fs, args); done {
		return code
	}
	w := bufio.NewWriter(d.stdout)
	if err := csartest.Write(w, csartest.Options{Name: *name}); err != nil {
		return fail(d, err)
	}
	if err := w.Flush(); err != nil {
		return fail(d, err)
	}
	return exitOK
}
