package sqlite

import (
	"os"
	"syscall"
	"time"
)

// fdatasync is what a log append needs: the data, not the metadata.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
