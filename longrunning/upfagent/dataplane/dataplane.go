// Package dataplane holds what the UPF agent and its data-plane drivers
// share: the rule a driver is asked to apply, the handle it returns, the
// ops and results of a batch, its typed errors, the normalisation of MEC
// 011 traffic filters into concrete matches (protocol numbers, prefixes,
// port ranges, and DSCP and TC for drivers that match them), and the
// "none" driver.
package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/kmep-io/kmep/store/mec"
)

// Rule is one traffic rule as a driver applies it.
type Rule struct {
	// Index is the rule's index from the store's allocator (1..N), stable
	// for the rule for as long as it exists: the data-plane id.
	Index         uint32
	AppInstanceID string
	ID            string
	Traffic       mec.TrafficRule
}

// Handle is what a driver created for a rule (its own ids, e.g. an ACL
// index and an ABF policy id). The agent records it and gives it back on
// the next Apply and on Remove; nil for a driver that needs none.
type Handle []uint32

// Applied is a rule the data plane holds, as the agent recorded it.
type Applied struct {
	Index         uint32
	AppInstanceID string
	ID            string
	Handle        Handle
}

// Op is one change of a batch (a driver that applies many changes in one
// data-plane transaction): Apply a rule, replacing the version recorded
// with Prev, or Remove what was applied.
type Op struct {
	// Apply is the rule to apply; nil for a removal.
	Apply *Rule
	// Prev is the handle recorded for the version Apply replaces, nil when
	// there is none.
	Prev Handle
	// Remove is the rule to take out; nil for an apply.
	Remove *Applied
}

// Result is the outcome of an Op: the handle of what Apply created, and
// the error (a *UnsupportedError when the rule cannot be expressed).
type Result struct {
	Handle Handle
	Err    error
}

// ErrUnsupported marks a rule the driver cannot express: retrying does not
// help; the rule stays failed until it changes.
var ErrUnsupported = errors.New("not expressible by the data plane")

// UnsupportedError says what of a rule a driver cannot express. It wraps
// ErrUnsupported.
type UnsupportedError struct {
	Driver string
	Reason string
}

func (e *UnsupportedError) Error() string { return e.Driver + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrUnsupported) true.
func (e *UnsupportedError) Unwrap() error { return ErrUnsupported }

// Unsupported returns an *UnsupportedError.
func Unsupported(driver, format string, args ...any) error {
	return &UnsupportedError{Driver: driver, Reason: fmt.Sprintf(format, args...)}
}

// RetvalError is a binary-API reply with a non-zero retval: the data
// plane refused the request. The agent retries it with backoff (a refusal
// may be transient, e.g. a resource being reconfigured).
type RetvalError struct {
	Message string
	Retval  int32
}

func (e *RetvalError) Error() string { return fmt.Sprintf("%s: retval %d", e.Message, e.Retval) }

// None is the driver for platforms without a UPF: it records nothing in
// any data plane and logs what it would do. Its rules count as applied.
type None struct {
	// Log receives one line per rule. Zero value: slog.Default().
	Log *slog.Logger
}

func (n None) log() *slog.Logger {
	if n.Log == nil {
		return slog.Default()
	}
	return n.Log
}

// Apply logs the rule.
func (n None) Apply(ctx context.Context, r Rule, prev Handle) (Handle, error) {
	n.log().Info("traffic rule (no data plane)", "app", r.AppInstanceID, "rule", r.ID, "index", r.Index,
		"action", r.Traffic.Action, "priority", deref(r.Traffic.Priority), "filters", len(r.Traffic.TrafficFilter))
	return nil, nil
}

// Remove logs the removal.
func (n None) Remove(ctx context.Context, a Applied) error {
	n.log().Info("traffic rule removed (no data plane)", "app", a.AppInstanceID, "rule", a.ID, "index", a.Index)
	return nil
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}
