package rediserver_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/kmep-io/kmep/local/rediserver"
)

// A relative data directory works (redis-server chdirs into --dir), and
// the AOF keeps data across a crash and restart.
func TestRelativeDirAndRestart(t *testing.T) {
	wd, _ := os.Getwd()
	tmp := t.TempDir()
	if err := os.Chdir(tmp); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	s, err := rediserver.Start(rediserver.Options{Dir: "data/redis", AOF: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// everysec: make the write durable before the crash.
	if err := c.Do(ctx, "BGREWRITEAOF").Err(); err != nil {
		t.Fatal(err)
	}
	for {
		info, _ := c.Info(ctx, "persistence").Result()
		if !strings.Contains(info, "aof_rewrite_in_progress:1") && !strings.Contains(info, "aof_rewrite_scheduled:1") {
			break
		}
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("after restart: %q %v", v, err)
	}
	if _, err := os.Stat(tmp + "/data/redis/redis.log"); err != nil {
		t.Fatalf("log not in the data dir: %v", err)
	}
}
