//go:build !linux

package filelog

import "os"

// syncData makes f's written data durable. Outside Linux it is a full
// fsync.
func syncData(f *os.File) error { return f.Sync() }

// lockDir does nothing outside Linux: spool runs its local log on Linux,
// where the directory is locked.
func lockDir(*os.File) error { return nil }
