package vpp_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/kmep-io/kmep/longrunning/upfagent/dataplane"
	"github.com/kmep-io/kmep/longrunning/upfagent/vpp"
)

// installed applies n DROP rules of spread priorities on interfaces 1, 2.
func installed(b *testing.B, n int) (*vpp.Driver, []dataplane.Rule) {
	v := newVPP(b, false)
	d := newDriver(b, v, vpp.Config{})
	rs := make([]dataplane.Rule, n)
	for i := range rs {
		rs[i] = rule(b, uint32(i+1), fmt.Sprint("r", i), i%256, "DROP", "",
			fmt.Sprintf(`{"dstAddress":["10.%d.%d.0/24"],"protocol":["TCP","UDP"],"dstPort":["80","443"]}`, i>>8, i&255))
		if _, err := d.Apply(context.Background(), rs[i], nil); err != nil {
			b.Fatal(err)
		}
	}
	return d, rs
}

// BenchmarkReapply measures re-applying known rules (resync of unchanged
// rules: one acl_add_replace each) with 200 rules on two interfaces,
// through govpp's mock adapter.
//
//	go test -run '^$' -bench Reapply -benchtime 20000x ./longrunning/upfagent/vpp/
func BenchmarkReapply(b *testing.B) {
	d, rs := installed(b, 200)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Apply(ctx, rs[i%len(rs)], nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rules/s")
}

// BenchmarkAddRemove measures adding a new rule and removing it again
// (ACL, its place in the lists of two interfaces holding 200 more, ABF
// policy and attachments, and all of it taken out) per iteration.
//
//	go test -run '^$' -bench AddRemove -benchtime 5000x ./longrunning/upfagent/vpp/
func BenchmarkAddRemove(b *testing.B) {
	d, _ := installed(b, 200)
	ctx := context.Background()
	fw := rule(b, 1000, "fw", 7, "FORWARD_DECAPSULATED", `{"interfaceType":"IP","dstIpAddress":"192.0.2.1"}`, `{"dstAddress":["10.200.0.0/16"]}`)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Apply(ctx, fw, nil); err != nil {
			b.Fatal(err)
		}
		if err := d.Remove(ctx, dataplane.Applied{Index: 1000, AppInstanceID: app, ID: "fw"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "add+remove/s")
}
