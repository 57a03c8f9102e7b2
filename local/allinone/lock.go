package allinone

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the name, under the data directory, of the file a running
// platform holds an exclusive flock on, with its pid written in it.
const LockFile = "lock"

// ErrDataDirInUse is the error of a start on a data directory another
// process holds.
var ErrDataDirInUse = errors.New("data directory in use")

// lockDataDir takes the data directory's lock without waiting and writes
// the process's pid in it. The lock lasts until release (or the process's
// end: the kernel drops a dead holder's flock, so a crash leaves no stale
// lock). When another process holds it, the error names that process's pid.
func lockDataDir(dir string) (release func(), err error) {
	p := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(p)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := strings.TrimSpace(string(b))
			if _, perr := strconv.Atoi(holder); perr != nil {
				holder = "unknown"
			}
			return nil, fmt.Errorf("%w: %s is held by pid %s (another make run?); stop it or set KMEP_DATA_DIR", ErrDataDirInUse, dir, holder)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
