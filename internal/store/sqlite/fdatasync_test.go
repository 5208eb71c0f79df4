package sqlite

import (
	"os"
	"syscall"
)

// fdatasync is what a log append needs: the data, not the metadata.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
