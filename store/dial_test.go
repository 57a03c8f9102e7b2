package store_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store"
)

func TestDial(t *testing.T) {
	for _, tc := range []struct {
		url     string
		addr    string // Options().Addr; "" when Dial must fail
		read    time.Duration
		wantErr string
	}{
		{url: "redis://127.0.0.1:6379/0", addr: "127.0.0.1:6379", read: 2 * time.Second},
		{url: "redis://127.0.0.1:6379/0?read_timeout=5s&max_retries=3", addr: "127.0.0.1:6379", read: 5 * time.Second},
		{url: "redis://127.0.0.1:6379/0?min_replicas=1&min_replicas_timeout=250ms", addr: "127.0.0.1:6379", read: 2 * time.Second},
		{url: "redis+sentinel://127.0.0.1:26379/0?master_name=kmep&addr=127.0.0.1:26380&min_replicas=1", addr: "FailoverClient", read: 2 * time.Second},
		{url: "rediss+sentinel://:pw@127.0.0.1:26379?master_name=kmep&password=data-pw", addr: "FailoverClient", read: 2 * time.Second},
		{url: "redis+sentinel://127.0.0.1:26379/0", wantErr: "master_name"},
		{url: "redis+sentinel://127.0.0.1:26379/0?master_name=kmep&route_randomly=true", wantErr: "primary"},
		{url: "redis+sentinel://127.0.0.1:26379/0?master_name=kmep&replica_only=true", wantErr: "primary"},
		{url: "redis://127.0.0.1:6379/0?min_replicas=-1", wantErr: "min_replicas"},
		{url: "redis://127.0.0.1:6379/0?min_replicas=x", wantErr: "min_replicas"},
		{url: "redis://127.0.0.1:6379/0?min_replicas=1&min_replicas_timeout=0s", wantErr: "min_replicas_timeout"},
		{url: "redis://127.0.0.1:6379/0?min_replicas=1&min_replicas_timeout=2s", wantErr: "below read_timeout"},
		{url: "redis://127.0.0.1:6379/0?no_such_option=1", wantErr: "no_such_option"},
		{url: "http://127.0.0.1:6379/0", wantErr: "scheme"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			c, err := store.Dial(tc.url)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Dial = %v, want an error about %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			o := c.Options()
			// go-redis turns the -1 Dial sets into 0 retries.
			if o.Addr != tc.addr || o.ReadTimeout != tc.read || o.MaxRetries != 0 {
				t.Errorf("Options: Addr %q ReadTimeout %s MaxRetries %d, want %q %s 0", o.Addr, o.ReadTimeout, o.MaxRetries, tc.addr, tc.read)
			}
		})
	}
}
