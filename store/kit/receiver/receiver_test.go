package receiver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/kmep-io/kmep/store/kit/receiver"
)

func event(t testing.TB, id string) cloudevents.Event {
	t.Helper()
	e := cloudevents.NewEvent()
	e.SetID(id)
	e.SetSource("/test")
	e.SetType("dev.kmep.test")
	if err := e.SetData(cloudevents.ApplicationJSON, map[string]string{"id": id}); err != nil {
		t.Fatal(err)
	}
	return e
}

// request builds a POST of e in binary (structured false) or structured
// mode.
func request(t testing.TB, ctx context.Context, url string, e cloudevents.Event, structured bool) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if structured {
		ctx = binding.WithForceStructured(ctx)
	}
	if err := cehttp.WriteRequest(ctx, binding.ToMessage(&e), req); err != nil {
		t.Fatal(err)
	}
	return req
}

func do(t testing.TB, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAnswers(t *testing.T) {
	var got atomic.Value
	var calls atomic.Int64
	results := map[string]protocol.Result{
		"ack":     protocol.ResultACK,
		"nil":     nil,
		"result":  cehttp.NewResult(http.StatusBadGateway, "%d of %d failed", 1, 2),
		"ok-text": cehttp.NewResult(http.StatusOK, "fine"),
		"error":   errors.New("boom"),
	}
	srv := httptest.NewServer(receiver.New(func(_ context.Context, e cloudevents.Event) protocol.Result {
		calls.Add(1)
		got.Store(e)
		return results[e.ID()]
	}, receiver.Options{MaxBytes: 4096}))
	t.Cleanup(srv.Close)
	ctx := context.Background()

	for _, tc := range []struct {
		id         string
		structured bool
		status     int
		body       string
	}{
		{"ack", false, http.StatusOK, ""},
		{"ack", true, http.StatusOK, ""},
		{"nil", false, http.StatusOK, ""},
		{"result", false, http.StatusBadGateway, "1 of 2 failed"},
		{"ok-text", true, http.StatusOK, "fine"},
		{"error", false, http.StatusInternalServerError, "boom"},
	} {
		status, body := do(t, request(t, ctx, srv.URL, event(t, tc.id), tc.structured))
		if status != tc.status || body != tc.body {
			t.Errorf("%s (structured %v): %d %q, want %d %q", tc.id, tc.structured, status, body, tc.status, tc.body)
		}
		if e, _ := got.Load().(cloudevents.Event); e.ID() != tc.id || string(e.Data()) != `{"id":"`+tc.id+`"}` {
			t.Errorf("%s: the function got %v", tc.id, e)
		}
	}
	before := calls.Load()

	// Refused before the function.
	post := func(ct, body string, h map[string]string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", ct)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		return do(t, req)
	}
	binaryNoSource := map[string]string{"ce-specversion": "1.0", "ce-id": "x", "ce-type": "t"}
	for _, tc := range []struct {
		name, ct, body string
		h              map[string]string
		status         int
	}{
		{"plain JSON", "application/json", `{"a":1}`, nil, http.StatusBadRequest},
		{"structured, not JSON", "application/cloudevents+json", `{`, nil, http.StatusBadRequest},
		{"binary without a source", "application/json", `{}`, binaryNoSource, http.StatusBadRequest},
		{"too large", "application/json", strings.Repeat("x", 5000), nil, http.StatusRequestEntityTooLarge},
	} {
		if status, body := post(tc.ct, tc.body, tc.h); status != tc.status {
			t.Errorf("%s: %d %q, want %d", tc.name, status, body, tc.status)
		}
	}
	for _, m := range []string{http.MethodGet, http.MethodOptions, http.MethodDelete} {
		req, _ := http.NewRequest(m, srv.URL, nil)
		if status, _ := do(t, req); status != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405", m, status)
		}
	}
	if n := calls.Load(); n != before {
		t.Errorf("the function was called %d times for refused requests", n-before)
	}
}

// Many requests at once, a third of them given up by their clients while
// the function runs: every other one is answered, with its own event's
// answer, and the receiver still answers afterwards. (The sdk's
// NewHTTPReceiveHandler leaves requests waiting for ever here:
// cloudevents/sdk-go#1224.)
func TestConcurrentRequestsWithCancellations(t *testing.T) {
	srv := httptest.NewServer(receiver.New(func(ctx context.Context, e cloudevents.Event) protocol.Result {
		select {
		case <-time.After(time.Duration(len(e.ID())%5+1) * time.Millisecond):
		case <-ctx.Done():
		}
		return cehttp.NewResult(http.StatusOK, "%s", e.ID())
	}, receiver.Options{}))
	t.Cleanup(srv.Close)
	var wg sync.WaitGroup
	var answered, cancelled atomic.Int64
	for i := range 300 {
		wg.Go(func() {
			id := fmt.Sprintf("event-%d%s", i, strings.Repeat("x", i%7))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if i%3 == 0 {
				ctx, cancel = context.WithTimeout(ctx, time.Duration(i%4)*time.Millisecond)
				defer cancel()
			}
			resp, err := http.DefaultClient.Do(request(t, ctx, srv.URL, event(t, id), i%2 == 0))
			if err != nil {
				if i%3 != 0 {
					t.Errorf("%s: %v", id, err)
				}
				cancelled.Add(1)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || string(b) != id {
				t.Errorf("%s answered %d %q", id, resp.StatusCode, b)
			}
			answered.Add(1)
		})
	}
	wg.Wait()
	t.Logf("%d answered, %d given up by their clients", answered.Load(), cancelled.Load())
	if status, body := do(t, request(t, context.Background(), srv.URL, event(t, "after"), false)); status != http.StatusOK || body != "after" {
		t.Errorf("after the burst: %d %q", status, body)
	}
}
