package tunnel

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

// writesConn is a net.Conn that records each Write, or fails them with err.
type writesConn struct {
	net.Conn
	writes [][]byte
	err    error
}

func (c *writesConn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func TestBatchConn(t *testing.T) {
	rec := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	for _, tc := range []struct {
		name    string
		held    [][]byte // written between hold and flush
		wantLen []int    // the writes that reach the connection
	}{
		{"nothing held", nil, nil},
		{"records of one frame, one write", [][]byte{rec(16<<10, 1), rec(16<<10, 2), rec(100, 3)}, []int{32<<10 + 100}},
		{"more than maxBatch, several writes", [][]byte{rec(200<<10, 1), rec(100<<10, 2), rec(10, 3)}, []int{200 << 10, 100<<10 + 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			under := &writesConn{}
			c := &batchConn{Conn: under}
			if _, err := c.Write([]byte("handshake")); err != nil || len(under.writes) != 1 {
				t.Fatalf("a write not held: %v, %d writes", err, len(under.writes))
			}
			under.writes = nil
			c.hold()
			var want []byte
			for _, p := range tc.held {
				if n, err := c.Write(p); n != len(p) || err != nil {
					t.Fatalf("held write: %d, %v", n, err)
				}
				want = append(want, p...)
			}
			if err := c.flush(); err != nil {
				t.Fatal(err)
			}
			var lens []int
			var got []byte
			for _, w := range under.writes {
				lens = append(lens, len(w))
				got = append(got, w...)
			}
			if !bytes.Equal(got, want) || len(lens) != len(tc.wantLen) {
				t.Fatalf("writes %v, want %v (bytes equal: %v)", lens, tc.wantLen, bytes.Equal(got, want))
			}
			for i := range lens {
				if lens[i] != tc.wantLen[i] {
					t.Fatalf("writes %v, want %v", lens, tc.wantLen)
				}
			}
			under.writes = nil
			if _, err := c.Write([]byte("alert")); err != nil || len(under.writes) != 1 {
				t.Fatalf("after flush a write goes through: %v, %d writes", err, len(under.writes))
			}
		})
	}

	// A failed write is the error of every later one and of flush.
	boom := errors.New("boom")
	under := &writesConn{}
	c := &batchConn{Conn: under}
	c.hold()
	_, _ = c.Write([]byte("record"))
	under.err = boom
	if err := c.flush(); !errors.Is(err, boom) {
		t.Fatalf("flush: %v, want boom", err)
	}
	under.err = nil
	if _, err := c.Write([]byte("x")); !errors.Is(err, boom) {
		t.Fatalf("write after a failed flush: %v, want boom", err)
	}
}
