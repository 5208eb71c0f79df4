// Command tern is a complete mail server: SMTP, IMAP, POP3 and the admin
// commands that manage it. See `tern help`.
package main

import (
	"os"

	"github.com/ternmail/tern/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
