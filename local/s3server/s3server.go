// Package s3server is the all-in-one's embedded S3-protocol server: when no
// S3_ENDPOINT is configured, packages are kept on disk under .kmep/ behind
// gofakes3 (files through its afero backend), so the very same aws-sdk-go-v2
// code path runs on a laptop as against MinIO.
//
// It is for a single developer: it does not check request signatures (any
// credentials are accepted), it listens on loopback only, and gofakes3
// assembles multipart uploads in memory before writing them.
package s3server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3afero"
	"github.com/spf13/afero"
)

// Server is a running embedded S3 server.
type Server struct {
	// Endpoint is its URL (http://127.0.0.1:port).
	Endpoint string
	srv      *http.Server
	done     chan error
}

// Start serves the buckets kept under dir on addr ("127.0.0.1:0" picks a
// port).
func Start(dir, addr string, log *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	backend, err := s3afero.MultiBucket(afero.NewBasePathFs(afero.NewOsFs(), dir))
	if err != nil {
		return nil, fmt.Errorf("s3 backend in %s: %w", dir, err)
	}
	faker := gofakes3.New(backend, gofakes3.WithAutoBucket(true), gofakes3.WithLogger(gofakes3.DiscardLog()))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{Endpoint: "http://" + l.Addr().String(), done: make(chan error, 1),
		srv: &http.Server{Handler: faker.Server(), ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		err := s.srv.Serve(l)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		if err != nil && log != nil {
			log.Error("embedded S3 server stopped", "err", err)
		}
		s.done <- err
	}()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
