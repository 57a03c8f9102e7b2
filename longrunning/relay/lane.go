package relay

import (
	"context"
	"sync"
)

// liveBurst is how many live items a partition publishes in a row while
// bulk ones wait: every liveBurst+1-th send is a bulk item's, so a steady
// stream of live changes slows the bulk lane down but never stops it.
const liveBurst = 7

// part is one partition's queues: live items, published first, and bulk
// items, each in stream order. A live item whose subject has bulk items
// queued or being published is queued behind them in the bulk lane, so
// that no event overtakes an earlier one of its subject. One reader puts
// and one worker takes.
type part struct {
	liveCap, bulkCap int

	mu         sync.Mutex
	live, bulk fifo
	// behind counts per subject the items queued in the bulk lane or being
	// published from it.
	behind map[string]int
	// liveRun counts the live items taken in a row while bulk ones waited.
	liveRun int

	wake chan struct{} // an item was queued
	room chan struct{} // an item left a queue
}

func newPart(liveCap, bulkCap int) *part {
	return &part{liveCap: liveCap, bulkCap: bulkCap, behind: map[string]int{},
		wake: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// put queues it, waiting while its lane is full. It reports false when ctx
// ended first.
func (p *part) put(ctx context.Context, it item) bool {
	for {
		p.mu.Lock()
		it.lane = it.bulk || p.behind[it.subject] > 0
		q, limit := &p.live, p.liveCap
		if it.lane {
			q, limit = &p.bulk, p.bulkCap
		}
		if q.len() < limit {
			q.push(it)
			if it.lane {
				p.behind[it.subject]++
			}
			p.mu.Unlock()
			signal(p.wake)
			return true
		}
		p.mu.Unlock()
		select {
		case <-p.room:
		case <-ctx.Done():
			return false
		}
	}
}

// take returns the next item to publish, waiting for one. It reports false
// when ctx ended first. Call done once the item is published.
func (p *part) take(ctx context.Context) (item, bool) {
	for {
		p.mu.Lock()
		it, ok := p.next()
		p.mu.Unlock()
		if ok {
			signal(p.room)
			return it, true
		}
		select {
		case <-p.wake:
		case <-ctx.Done():
			return item{}, false
		}
	}
}

// next pops the next item: a live one unless none is queued or liveBurst
// were taken in a row while bulk ones waited.
func (p *part) next() (item, bool) {
	switch {
	case p.live.len() > 0 && (p.bulk.len() == 0 || p.liveRun < liveBurst):
		if p.bulk.len() > 0 {
			p.liveRun++
		}
		return p.live.pop(), true
	case p.bulk.len() > 0:
		p.liveRun = 0
		return p.bulk.pop(), true
	}
	return item{}, false
}

// done records that it, taken from the bulk lane, is published: a live
// item of its subject need no longer wait behind it.
func (p *part) done(it item) {
	if !it.lane {
		return
	}
	p.mu.Lock()
	if p.behind[it.subject]--; p.behind[it.subject] <= 0 {
		delete(p.behind, it.subject)
	}
	p.mu.Unlock()
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// fifo is a queue of items in a slice. A full slice whose front half is
// consumed is compacted rather than grown, so it holds at most twice the
// items queued, and each item is copied O(1) times on average.
type fifo struct {
	items []item
	head  int
}

func (q *fifo) len() int { return len(q.items) - q.head }

func (q *fifo) push(it item) {
	if len(q.items) == cap(q.items) && q.head >= len(q.items)/2 && q.head > 0 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, it)
}

func (q *fifo) pop() item {
	it := q.items[q.head]
	q.items[q.head] = item{}
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return it
}
