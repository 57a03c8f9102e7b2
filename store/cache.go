package store

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// CacheOptions configure a ServiceCache.
type CacheOptions struct {
	// Render turns a record into the bytes the cache hands out with it
	// (the API's JSON). Zero value: the record's Info as is.
	Render func(ServiceRecord) []byte
	// MaxStaleness bounds how old the cache may be: when the change stream
	// has not been read successfully for this long, Fresh reports false and
	// readers go to Redis instead. Zero value: 1 s.
	MaxStaleness time.Duration
	// Block is how long one read of the change stream waits for new
	// entries. Zero value: MaxStaleness / 4.
	Block time.Duration
	// OnError, when set, is told of each failure of the follow loop.
	OnError func(error)
}

// CachedService is a record with its rendered bytes.
type CachedService struct {
	ServiceRecord
	JSON []byte
}

// ServiceCache is an in-process copy of every service record, loaded once
// and then kept current by following the change stream (XREAD BLOCK). It
// serves discovery without a Redis round trip. Staleness is bounded: Fresh
// is true only while the last successful stream read is younger than
// MaxStaleness; a write made through this process can be awaited with
// WaitFor (read-your-writes).
type ServiceCache struct {
	s    *Store
	opts CacheOptions

	mu     sync.RWMutex
	byID   map[string]*CachedService
	byName map[string]map[string]*CachedService
	byCat  map[string]map[string]*CachedService
	byApp  map[string]map[string]*CachedService
	lastID string
	moved  chan struct{} // closed and replaced whenever lastID moves

	syncedAt atomic.Int64 // unix nanos of the last successful stream read; 0 = not synced
}

// NewServiceCache returns a cache over s; call Run to fill and follow it.
func NewServiceCache(s *Store, opts CacheOptions) *ServiceCache {
	if opts.Render == nil {
		opts.Render = func(r ServiceRecord) []byte { return r.Info }
	}
	if opts.MaxStaleness == 0 {
		opts.MaxStaleness = time.Second
	}
	if opts.Block == 0 {
		opts.Block = opts.MaxStaleness / 4
	}
	return &ServiceCache{s: s, opts: opts, moved: make(chan struct{})}
}

// Run loads a snapshot and follows the change stream until ctx ends. After
// any failure it marks itself stale, waits (backing off up to 2 s) and
// reloads, so a Redis restart is recovered from on its own.
func (c *ServiceCache) Run(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := c.follow(ctx)
		c.syncedAt.Store(0)
		if ctx.Err() != nil {
			break
		}
		if c.opts.OnError != nil && err != nil {
			c.opts.OnError(err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
	return nil
}

func (c *ServiceCache) follow(ctx context.Context) error {
	last, err := c.s.LastChangeID(ctx)
	if err != nil {
		return err
	}
	all, err := c.s.AllServices(ctx)
	if err != nil {
		return err
	}
	c.load(all, last)
	c.syncedAt.Store(time.Now().UnixNano())
	for {
		chs, err := c.s.ReadChanges(ctx, last, 1000, c.opts.Block)
		if err != nil {
			return err
		}
		if n := len(chs); n > 0 {
			c.apply(chs)
			last = chs[n-1].StreamID
		}
		c.syncedAt.Store(time.Now().UnixNano())
	}
}

func (c *ServiceCache) load(all []ServiceRecord, last string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byID = make(map[string]*CachedService, len(all))
	c.byName = map[string]map[string]*CachedService{}
	c.byCat = map[string]map[string]*CachedService{}
	c.byApp = map[string]map[string]*CachedService{}
	for _, r := range all {
		c.put(&CachedService{ServiceRecord: r, JSON: c.opts.Render(r)})
	}
	c.advance(last)
}

func (c *ServiceCache) advance(id string) {
	if c.lastID == "" || CompareStreamIDs(id, c.lastID) > 0 {
		c.lastID = id
		close(c.moved)
		c.moved = make(chan struct{})
	}
}

func (c *ServiceCache) apply(chs []Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range chs {
		if ch.Kind != KindService {
			continue
		}
		r := ch.Service
		old := c.byID[r.ID]
		if old != nil && old.Rev >= r.Rev {
			continue // the snapshot was newer than this replayed entry
		}
		if old != nil {
			c.remove(old)
		}
		if ch.Type != ChangeRemoved {
			c.put(&CachedService{ServiceRecord: r, JSON: c.opts.Render(r)})
		}
	}
	c.advance(chs[len(chs)-1].StreamID)
}

func index(m map[string]map[string]*CachedService, key string, cs *CachedService) {
	set := m[key]
	if set == nil {
		set = map[string]*CachedService{}
		m[key] = set
	}
	set[cs.ID] = cs
}

func unindex(m map[string]map[string]*CachedService, key, id string) {
	if set := m[key]; set != nil {
		delete(set, id)
		if len(set) == 0 {
			delete(m, key)
		}
	}
}

func (c *ServiceCache) put(cs *CachedService) {
	c.byID[cs.ID] = cs
	index(c.byName, cs.Name, cs)
	index(c.byApp, cs.AppInstanceID, cs)
	if cs.CategoryID != "" {
		index(c.byCat, cs.CategoryID, cs)
	}
}

func (c *ServiceCache) remove(cs *CachedService) {
	delete(c.byID, cs.ID)
	unindex(c.byName, cs.Name, cs.ID)
	unindex(c.byApp, cs.AppInstanceID, cs.ID)
	if cs.CategoryID != "" {
		unindex(c.byCat, cs.CategoryID, cs.ID)
	}
}

// Fresh reports whether the cache may answer: it has a snapshot and has
// read the change stream successfully within MaxStaleness.
func (c *ServiceCache) Fresh() bool {
	t := c.syncedAt.Load()
	return t != 0 && time.Since(time.Unix(0, t)) < c.opts.MaxStaleness
}

// WaitFor blocks until the cache has applied the change-stream entry id (or
// a later one), ctx ends, or timeout passes. It reports whether it caught up.
func (c *ServiceCache) WaitFor(ctx context.Context, id string, timeout time.Duration) bool {
	if id == "" {
		return true
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		c.mu.RLock()
		done := c.lastID != "" && CompareStreamIDs(c.lastID, id) >= 0
		moved := c.moved
		c.mu.RUnlock()
		if done {
			return true
		}
		select {
		case <-moved:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// Filter selects services; at most one of IDs, Names, Categories is used
// (the first non-empty one); App, when set, narrows to one app instance.
type Filter struct {
	App        string
	IDs        []string
	Names      []string
	Categories []string
}

// Select returns the cached services matching f, ordered by id.
func (c *ServiceCache) Select(f Filter) []*CachedService {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*CachedService
	keep := func(cs *CachedService) {
		if f.App == "" || cs.AppInstanceID == f.App {
			out = append(out, cs)
		}
	}
	switch {
	case len(f.IDs) > 0:
		for _, id := range f.IDs {
			if cs := c.byID[id]; cs != nil {
				keep(cs)
			}
		}
	case len(f.Names) > 0:
		for _, n := range f.Names {
			for _, cs := range c.byName[n] {
				keep(cs)
			}
		}
	case len(f.Categories) > 0:
		for _, n := range f.Categories {
			for _, cs := range c.byCat[n] {
				keep(cs)
			}
		}
	case f.App != "":
		for _, cs := range c.byApp[f.App] {
			out = append(out, cs)
		}
	default:
		out = make([]*CachedService, 0, len(c.byID))
		for _, cs := range c.byID {
			out = append(out, cs)
		}
	}
	if len(out) > 1 {
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	}
	return dedupe(out)
}

func dedupe(s []*CachedService) []*CachedService {
	if len(s) < 2 {
		return s
	}
	w := 1
	for i := 1; i < len(s); i++ {
		if s[i].ID != s[w-1].ID {
			s[w] = s[i]
			w++
		}
	}
	return s[:w]
}

// Get returns one cached service.
func (c *ServiceCache) Get(id string) (*CachedService, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	cs, ok := c.byID[id]
	return cs, ok
}

// Len is the number of cached services.
func (c *ServiceCache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byID)
}

// States counts the cached services by state (ACTIVE, INACTIVE,
// SUSPENDED).
func (c *ServiceCache) States() map[string]int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := make(map[string]int, 3)
	for _, cs := range c.byID {
		n[cs.State]++
	}
	return n
}

// SyncedAt is the time of the last successful read of the change stream,
// zero before the first.
func (c *ServiceCache) SyncedAt() time.Time {
	t := c.syncedAt.Load()
	if t == 0 {
		return time.Time{}
	}
	return time.Unix(0, t)
}
