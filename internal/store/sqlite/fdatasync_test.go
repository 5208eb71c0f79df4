package sqlite

import (
	"fmt"
	"os"
	"strings"
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

// bytesWritten is what this process passed to write(2) and friends, from
// /proc/self/io (0 where there is none).
func bytesWritten() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	var n int64
	for _, l := range strings.Split(string(b), "\n") {
		if _, err := fmt.Sscanf(l, "wchar: %d", &n); err == nil {
			return n
		}
	}
	return 0
}
