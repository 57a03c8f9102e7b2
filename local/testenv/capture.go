package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Capture records the IP packets an interface of a network namespace
// receives and sends (an AF_PACKET socket, as tcpdump uses): a test sees
// what reached a host whose stack drops it, such as the copy of a packet
// addressed to someone else. Close it when done.
type Capture struct {
	f    *os.File
	done chan struct{}

	mu      sync.Mutex
	packets [][]byte
	bytes   int
}

// maxCaptured bounds what a Capture keeps (the oldest packets go first).
const maxCaptured = 16 << 20

// CaptureIn starts capturing on interface dev of namespace ns.
func CaptureIn(ns, dev string) (*Capture, error) {
	var fd int
	var serr error
	if err := inNamespace(ns, func() {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			serr = err
			return
		}
		proto := htons(unix.ETH_P_ALL)
		fd, serr = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, int(proto))
		if serr != nil {
			return
		}
		if serr = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); serr != nil {
			_ = unix.Close(fd)
		}
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, fmt.Errorf("capture on %s in %s: %w", dev, ns, serr)
	}
	c := &Capture{f: os.NewFile(uintptr(fd), "capture:"+ns+":"+dev), done: make(chan struct{})}
	go c.read()
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *Capture) read() {
	defer close(c.done)
	buf := make([]byte, 65536)
	for {
		n, err := c.f.Read(buf)
		if err != nil {
			return
		}
		p := bytes.Clone(buf[:n])
		c.mu.Lock()
		c.packets = append(c.packets, p)
		c.bytes += n
		for c.bytes > maxCaptured && len(c.packets) > 1 {
			c.bytes -= len(c.packets[0])
			c.packets = c.packets[1:]
		}
		c.mu.Unlock()
	}
}

// Count is how many captured packets contain marker.
func (c *Capture) Count(marker []byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, p := range c.packets {
		if bytes.Contains(p, marker) {
			n++
		}
	}
	return n
}

// Close stops the capture.
func (c *Capture) Close() error {
	err := c.f.Close()
	<-c.done
	return err
}

// LinkStats are an interface's kernel counters.
type LinkStats struct {
	RxBytes, RxPackets, TxBytes, TxPackets uint64
}

// LinkStatsIn reads the counters of interface dev in namespace ns (from
// /proc/net/dev as that namespace sees it).
func LinkStatsIn(ns, dev string) (LinkStats, error) {
	var st LinkStats
	var rerr error
	if err := inNamespace(ns, func() { st, rerr = readNetDev(dev) }); err != nil {
		return st, err
	}
	return st, rerr
}

func readNetDev(dev string) (LinkStats, error) {
	f, err := os.Open("/proc/thread-self/net/dev")
	if err != nil {
		return LinkStats{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) != dev {
			continue
		}
		// rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets ...
		fs := strings.Fields(rest)
		if len(fs) < 10 {
			return LinkStats{}, fmt.Errorf("/proc/net/dev: short line for %s", dev)
		}
		var v [4]uint64
		for i, idx := range []int{0, 1, 8, 9} {
			if v[i], err = strconv.ParseUint(fs[idx], 10, 64); err != nil {
				return LinkStats{}, fmt.Errorf("/proc/net/dev %s: %w", dev, err)
			}
		}
		return LinkStats{RxBytes: v[0], RxPackets: v[1], TxBytes: v[2], TxPackets: v[3]}, nil
	}
	if err := sc.Err(); err != nil {
		return LinkStats{}, err
	}
	return LinkStats{}, errors.New("/proc/net/dev: no interface " + dev)
}
