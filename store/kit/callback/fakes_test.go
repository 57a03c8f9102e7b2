package callback_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"

	"github.com/kmep-io/kmep/store/kit/callback"
)

var _ callback.Resolver = (*fakeResolver)(nil)

// fakeResolver answers from a map; lookupFn, when set, answers instead.
// Names missing from the map fail with errNoSuchHost; err, when set, is
// returned for every lookup.
type fakeResolver struct {
	hosts    map[string][]netip.Addr
	err      error
	lookupFn func(ctx context.Context, host string) ([]netip.Addr, error)

	mu    sync.Mutex
	calls []string
}

var errNoSuchHost = errors.New("no such host")

func (r *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	r.calls = append(r.calls, network+" "+host)
	r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	if r.lookupFn != nil {
		return r.lookupFn(ctx, host)
	}
	addrs, ok := r.hosts[host]
	if !ok {
		return nil, errNoSuchHost
	}
	return addrs, nil
}

func (r *fakeResolver) lookups() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// addrs parses a space-separated list of IP addresses.
func addrs(s string) []netip.Addr {
	var out []netip.Addr
	for f := range strings.FieldsSeq(s) {
		out = append(out, netip.MustParseAddr(f))
	}
	return out
}

// prefixes parses a space-separated list of CIDR prefixes.
func prefixes(s string) []netip.Prefix {
	var out []netip.Prefix
	for f := range strings.FieldsSeq(s) {
		out = append(out, netip.MustParsePrefix(f))
	}
	return out
}
