// Command ternload is Tern's load generator: it drives SMTP, IMAP and POP3
// servers (Tern or its peers) over real sockets and reports throughput and
// latency percentiles. See "ternload -h" and docs/performance.md.
package main

import (
	"os"

	"github.com/ternmail/tern/internal/loadgen"
)

func main() {
	os.Exit(loadgen.Main(os.Args[1:], os.Stdout, os.Stderr))
}
