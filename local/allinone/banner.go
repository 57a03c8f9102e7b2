package allinone

import (
	"fmt"
	"io"
	"log/slog"
)

// banner is what a person starting the platform needs to know first,
// filled in as Run starts each part.
type banner struct {
	url        string // the platform's base URL
	dns        string // the mesh DNS server's address
	adminToken string // where the admin token comes from: a file or the environment
	redis      string // which store, embedded or not
	s3         string // which package bucket, embedded or not
	tokenFile  string // the admin token's file; "" when it came from the environment
}

// try is a first command to run against the platform.
func (b banner) try() string {
	cmd := "kmepctl --server " + b.url
	if b.tokenFile != "" {
		cmd += " --token-file " + b.tokenFile
	}
	return cmd + " list services"
}

// print logs the banner as the "ready" line and, when w is set, writes it
// as plain lines to w.
func (b banner) print(log *slog.Logger, w io.Writer) {
	log.Info("ready", "url", b.url, "dns", b.dns, "adminToken", b.adminToken, "redis", b.redis, "s3", b.s3)
	if w == nil {
		return
	}
	fmt.Fprintf(w, `
kmep is up
  URL          %s
  DNS          %s (udp and tcp)
  admin token  %s
  Redis        %s
  S3           %s
  try          %s

`, b.url, b.dns, b.adminToken, b.redis, b.s3, b.try())
}
