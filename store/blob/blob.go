// Package blob keeps app packages in an S3 bucket (MinIO, or the all-in-one's
// embedded S3 server) with aws-sdk-go-v2: uploads are streamed in parts by
// its transfer manager, reads are ranged GETs behind an io.ReaderAt, and
// addressing is path-style so any S3-protocol server works.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Sentinel errors. Check them with errors.Is.
var (
	// ErrNotFound: no such object.
	ErrNotFound = errors.New("object not found")
	// ErrUnavailable: S3 could not be reached or failed.
	ErrUnavailable = errors.New("object storage unavailable")
)

// Config locates the bucket (S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY,
// S3_SECRET_KEY, S3_REGION).
type Config struct {
	// Endpoint is the S3 server's URL, e.g. http://127.0.0.1:9000. Required.
	Endpoint string
	// Bucket is created when missing. Zero value: "kmep-packages".
	Bucket string
	// AccessKey and SecretKey are the static credentials. Required.
	AccessKey, SecretKey string
	// Region. Zero value: "us-east-1".
	Region string
	// PartSize is the multipart upload's part size. Zero value: 5 MiB (S3's
	// smallest; an upload holds about PartSize × (Concurrency + 1) in memory).
	PartSize int64
	// Concurrency is how many parts are in flight at once; memory used by
	// an upload is about PartSize × (Concurrency + 1). Zero value: 3.
	Concurrency int
}

// Store is a bucket. It is safe for concurrent use.
type Store struct {
	s3     *s3.Client
	tm     *transfermanager.Client
	bucket string
}

// New returns the bucket of cfg. It does not contact the server.
func New(cfg Config) (*Store, error) {
	if cfg.Endpoint == "" || cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, errors.New("blob: Endpoint, AccessKey and SecretKey are required")
	}
	if cfg.Bucket == "" {
		cfg.Bucket = "kmep-packages"
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = 5 << 20
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 3
	}
	httpc := &http.Client{Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	}}
	client := s3.New(s3.Options{
		Region:                     cfg.Region,
		BaseEndpoint:               aws.String(cfg.Endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, ""),
		HTTPClient:                 httpc,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		RetryMaxAttempts:           2,
	})
	tm := transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = cfg.PartSize
		o.MultipartUploadThreshold = cfg.PartSize
		o.Concurrency = cfg.Concurrency
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.FailTimeout = 10 * time.Second
	})
	return &Store{s3: client, tm: tm, bucket: cfg.Bucket}, nil
}

// Bucket is the bucket's name.
func (s *Store) Bucket() string { return s.bucket }

// EnsureBucket creates the bucket when it does not exist.
func (s *Store) EnsureBucket(ctx context.Context) error {
	_, err := s.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket})
	if err == nil {
		return nil
	}
	if classify(err) != ErrNotFound {
		return wrap("head bucket "+s.bucket, err)
	}
	_, err = s.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &s.bucket})
	var owned *types.BucketAlreadyOwnedByYou
	if errors.As(err, &owned) {
		return nil
	}
	return wrap("create bucket "+s.bucket, err)
}

// Put streams r to key in parts; nothing is left behind when it fails (the
// transfer manager aborts the multipart upload).
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	_, err := s.tm.UploadObject(ctx, &transfermanager.UploadObjectInput{Bucket: &s.bucket, Key: &key, Body: r,
		ContentType: aws.String("application/zip")})
	return wrap("upload "+key, err)
}

// Size returns an object's size. ErrNotFound.
func (s *Store) Size(ctx context.Context, key string) (int64, error) {
	out, err := s.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return 0, wrap("head "+key, err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// Delete removes an object (absent is fine).
func (s *Store) Delete(ctx context.Context, key string) error {
	_, err := s.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil && classify(err) == ErrNotFound {
		return nil
	}
	return wrap("delete "+key, err)
}

// List returns the keys under prefix, in order.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	pages := s3.NewListObjectsV2Paginator(s.s3, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, wrap("list "+prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}

// Exists reports whether an object exists.
func (s *Store) Exists(ctx context.Context, key string) (bool, error) {
	_, err := s.Size(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// ReaderAt reads the object key of size bytes with ranged GETs, each at
// least readAhead bytes and kept until a read falls outside it: zip
// readers read small pieces in order, and one GET per piece would be slow.
// Reads are bounded by ctx. It is safe for concurrent use.
func (s *Store) ReaderAt(ctx context.Context, key string, size int64) io.ReaderAt {
	return &rangeReader{ctx: ctx, s: s, key: key, size: size}
}

const readAhead = 256 << 10

type rangeReader struct {
	ctx  context.Context // the reads' lifetime: a ReaderAt has no context of its own
	s    *Store
	key  string
	size int64

	mu  sync.Mutex
	off int64 // buf holds bytes [off, off+len(buf))
	buf []byte
}

func (r *rangeReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("blob: negative offset")
	}
	if off >= r.size {
		return 0, io.EOF
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for n < len(p) && off < r.size {
		if off >= r.off && off < r.off+int64(len(r.buf)) {
			c := copy(p[n:], r.buf[off-r.off:])
			n += c
			off += int64(c)
			continue
		}
		want := max(int64(len(p)-n), readAhead)
		if err := r.fill(off, want); err != nil {
			return n, err
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// fill loads [off, off+want) (clipped to the object) into buf.
func (r *rangeReader) fill(off, want int64) error {
	end := min(off+want, r.size) - 1
	out, err := r.s.s3.GetObject(r.ctx, &s3.GetObjectInput{Bucket: &r.s.bucket, Key: &r.key,
		Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, end))})
	if err != nil {
		return wrap("read "+r.key, err)
	}
	defer out.Body.Close()
	buf := make([]byte, end-off+1)
	if _, err := io.ReadFull(out.Body, buf); err != nil {
		return wrap("read "+r.key, err)
	}
	r.off, r.buf = off, buf
	return nil
}

// classify maps an S3 error to ErrNotFound, or nil when it is something else.
func classify(err error) error {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	var nsb *types.NoSuchBucket
	if errors.As(err, &nsk) || errors.As(err, &nf) || errors.As(err, &nsb) {
		return ErrNotFound
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && (ae.ErrorCode() == "NotFound" || ae.ErrorCode() == "NoSuchKey" || ae.ErrorCode() == "NoSuchBucket") {
		return ErrNotFound
	}
	return nil
}

// wrap classifies err: not found, the caller's own cancellation, or S3
// being unavailable (anything else: network, 5xx, refused credentials).
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if c := classify(err); c != nil {
		return fmt.Errorf("%s: %w", op, c)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}
