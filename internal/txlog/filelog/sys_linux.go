package filelog

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// syncData makes f's written data durable with fdatasync, which skips the
// metadata a later read does not need (it still syncs a grown size).
func syncData(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = unix.Fdatasync(int(fd))
			if serr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return serr
}

// lockDir takes an exclusive, non-blocking lock on f, held until f is
// closed, so that two logs never write one directory.
func lockDir(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) {
		lerr = unix.Flock(int(fd), unix.LOCK_EX|unix.LOCK_NB)
	}); err != nil {
		return err
	}
	if lerr == unix.EWOULDBLOCK {
		return fmt.Errorf("%w: locked by another process or log", lerr)
	}
	return lerr
}
