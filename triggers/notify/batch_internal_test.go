package notify

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Requests made while a call is in flight are answered by the next call
// together (at most max at a time), each with its own answer; an error
// fails exactly the requests of its call; a lone request is answered at
// once; and the leading caller's cancellation does not reach the call.
func TestBatcher(t *testing.T) {
	var calls, biggest atomic.Int32
	release := make(chan struct{})
	var first sync.Once
	b := &batcher[int, int]{max: 8, timeout: time.Second, do: func(ctx context.Context, qs []int) ([]int, error) {
		calls.Add(1)
		if int32(len(qs)) > biggest.Load() {
			biggest.Store(int32(len(qs)))
		}
		first.Do(func() { <-release }) // hold the first call until the others queue
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out := make([]int, len(qs))
		for i, q := range qs {
			if q < 0 {
				return nil, errors.New("negative")
			}
			out[i] = q * 10
		}
		return out, nil
	}}

	// The first request leads, with a context cancelled while its call
	// runs; 20 more queue behind it.
	ctx, cancel := context.WithCancel(context.Background())
	lead := make(chan error, 1)
	go func() {
		r, err := b.Do(ctx, 1)
		if err == nil && r != 10 {
			err = errors.New("wrong answer")
		}
		lead <- err
	}()
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 2; i <= 21; i++ {
		wg.Go(func() {
			r, err := b.Do(context.Background(), i)
			if err == nil && r != i*10 {
				err = errors.New("wrong answer")
			}
			errs <- err
		})
	}
	for {
		b.mu.Lock()
		n := len(b.queue)
		b.mu.Unlock()
		if n == 20 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	close(release)
	wg.Wait()
	close(errs)
	if err := <-lead; err != nil {
		t.Fatalf("leading request: %v", err)
	}
	for err := range errs {
		if err != nil {
			t.Fatalf("queued request: %v", err)
		}
	}
	// 1 alone, then 20 in calls of at most 8: 1 + 3 calls.
	if c, m := calls.Load(), biggest.Load(); c != 4 || m != 8 {
		t.Errorf("%d calls, biggest %d; want 4 calls of at most 8", c, m)
	}
	if _, err := b.Do(context.Background(), -1); err == nil {
		t.Error("a failing call: want its error")
	}
	if r, err := b.Do(context.Background(), 3); err != nil || r != 30 {
		t.Errorf("after a failure: %d, %v", r, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running || len(b.queue) != 0 {
		t.Errorf("idle batcher: running %v, queue %d", b.running, len(b.queue))
	}
}
