package store

import (
	"context"
	"errors"
	"slices"
	"strings"
)

// ListAppConfs returns every app instance's configuration, without secrets
// (as GetAppConf), sorted by appInstanceId. It scans the keyspace (SCAN, in
// batches), for an operator's view; no API path of an app uses it.
func (s *Store) ListAppConfs(ctx context.Context) ([]AppConf, error) {
	prefix := s.key("conf") + ":"
	var apps []string
	iter := s.rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
	for iter.Next(ctx) {
		app := strings.TrimPrefix(iter.Val(), prefix)
		if app != "" && !strings.Contains(app, ":") {
			apps = append(apps, app)
		}
	}
	if err := iter.Err(); err != nil {
		return nil, wrap("list app confs", err)
	}
	slices.Sort(apps)
	apps = slices.Compact(apps)
	out := make([]AppConf, 0, len(apps))
	for _, app := range apps {
		c, err := s.GetAppConf(ctx, app)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
