// Package loadgen is the engine of ternload: minimal SMTP, LMTP, IMAP and
// POP3 clients over raw sockets, the workloads built on them, and the
// latency statistics they report. The clients do only what the workloads
// need, without per-response allocation where it matters, so that the tool
// is not what a benchmark measures.
package loadgen

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

const usage = `ternload drives SMTP, IMAP and POP3 servers over real sockets with N
concurrent clients and reports throughput and p50/p90/p99/max latency.

Usage:
  ternload smtp      -addr HOST:PORT [-c 10] [-n 5000 | -d 30s] [-size 4096] -to RCPT[,RCPT...] [-persistent]
  ternload imap      -addr HOST:PORT [-c 10] [-d 30s] -users SPEC -pass PASS
  ternload imap-idle -addr HOST:PORT -n 1000 -users SPEC -pass PASS [-d 30s]
  ternload pop3      -addr HOST:PORT [-c 10] -users SPEC -pass PASS [-keep]
  ternload pop3-idle -addr HOST:PORT -n 1000 -users SPEC -pass PASS [-d 30s]
  ternload smtp-idle -addr HOST:PORT -n 1000 [-d 30s]
  ternload seed      (-smtp|-lmtp) HOST:PORT -users SPEC -count 200 -mbox FILE

A user SPEC is "bench%d@bench.test:1-100" (a pattern and a range) or a
comma-separated list. A progress line is shown on stderr while running when
stderr is a terminal, or with -progress. Run "ternload COMMAND -h" for the
flags of one command. Connect only to servers you run.
`

// Main runs ternload with args (without the program name) and returns the
// exit status: 0 success, 1 the run had errors, 2 bad usage.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		io.WriteString(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmds := map[string]func([]string, io.Writer, io.Writer) error{
		"smtp": cmdSMTP, "imap": cmdIMAP, "pop3": cmdPOP3, "seed": cmdSeed,
		"imap-idle": cmdIdle("imap"), "pop3-idle": cmdIdle("pop3"), "smtp-idle": cmdIdle("smtp"),
	}
	f, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "ternload: unknown command %q\n\n", args[0])
		io.WriteString(stderr, usage)
		return 2
	}
	err := f(args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "ternload %s: %v\n", args[0], err)
		return 1
	}
}

var errUsage = errors.New("usage")

// common holds the flags every load command shares.
type common struct {
	addr              string
	c                 int
	n                 int64
	d, timeout        time.Duration
	tls, starttls     bool
	insecure          bool
	progress          bool
	users, pass       string
	parsedUsers       []string
	needUsers, needND bool
}

func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ternload "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ternload %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func (c *common) register(fs *flag.FlagSet, defaultAddr string, users bool) {
	fs.StringVar(&c.addr, "addr", defaultAddr, "server `host:port`")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "I/O timeout per command")
	fs.BoolVar(&c.tls, "tls", false, "implicit TLS on connect (SMTPS/IMAPS/POP3S)")
	fs.BoolVar(&c.starttls, "starttls", false, "upgrade with STARTTLS (STLS for POP3) after the greeting")
	fs.BoolVar(&c.insecure, "insecure-tls", false, "do not verify the server certificate")
	fs.BoolVar(&c.progress, "progress", false, "show the progress line even when stderr is not a terminal")
	if users {
		c.needUsers = true
		fs.StringVar(&c.users, "users", "", "users: `SPEC` like bench%d@bench.test:1-100, or a comma-separated list")
		fs.StringVar(&c.pass, "pass", "pass", "password of every user")
	}
}

func (c *common) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	bad := func(format string, a ...any) error {
		fmt.Fprintf(fs.Output(), format+"\n", a...)
		fs.Usage()
		return errUsage
	}
	if fs.NArg() > 0 {
		return bad("unexpected argument %q", fs.Arg(0))
	}
	if c.addr == "" {
		return bad("-addr is required")
	}
	if c.tls && c.starttls {
		return bad("-tls and -starttls exclude each other")
	}
	if c.needUsers {
		u, err := ParseUsers(c.users)
		if err != nil {
			return bad("-users: %v", err)
		}
		c.parsedUsers = u
	}
	if c.c < 1 {
		return bad("-c must be at least 1")
	}
	if c.needND && c.n <= 0 && c.d <= 0 {
		return bad("give -n or -d")
	}
	return nil
}

func (c *common) dialOpts() DialOpts {
	o := DialOpts{Addr: c.addr, Insecure: c.insecure, Timeout: c.timeout}
	switch {
	case c.tls:
		o.TLS = TLSImplicit
	case c.starttls:
		o.TLS = TLSStart
	}
	return o
}

func (c *common) runOpts(stderr io.Writer) RunOpts {
	return RunOpts{Concurrency: c.c, Ops: c.n, Duration: c.d, Progress: c.showProgress(stderr), Stderr: stderr}
}

func (c *common) showProgress(stderr io.Writer) bool {
	if c.progress {
		return true
	}
	f, ok := stderr.(*os.File)
	return ok && isTerminal(f)
}

// failed turns a run with errors into exit status 1, so scripts notice.
func failed(r Result) error {
	if n := r.Rec.Errors(); n > 0 {
		return fmt.Errorf("%d operations failed (see the errors above)", n)
	}
	return nil
}

func cmdSMTP(args []string, stdout, stderr io.Writer) error {
	var c common
	var o SMTPOpts
	var to string
	fs := newFlagSet("smtp", "smtp -addr HOST:PORT [-c 10] [-n 5000 | -d 30s] [-size 4096] -to RCPT[,RCPT...] [flags]\n\n"+
		"Sends one message per SMTP transaction; only 250 after DATA counts as delivered.\n"+
		"Recipients are used in turn, one per message. Errors are counted by command and reply code.", stderr)
	c.register(fs, "127.0.0.1:25", false)
	c.needND = true
	fs.IntVar(&c.c, "c", 10, "concurrent sessions")
	fs.Int64Var(&c.n, "n", 0, "messages to send in total (0: until -d is over)")
	fs.DurationVar(&c.d, "d", 0, "run for this long (0: until -n messages)")
	fs.IntVar(&o.Size, "size", 4096, "message size in bytes")
	fs.StringVar(&o.From, "from", "loadgen@client.test", "envelope sender")
	fs.StringVar(&to, "to", "", "recipients, comma-separated, or a user SPEC (bench%d@bench.test:1-100)")
	fs.BoolVar(&o.Persistent, "persistent", false, "keep each session open for the next message (else: new connection per message)")
	fs.StringVar(&o.Auth, "auth", "", "AUTH PLAIN as `user:pass`")
	fs.StringVar(&o.Helo, "helo", "ternload.test", "EHLO name")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	rcpts, err := ParseUsers(to)
	if err != nil {
		fmt.Fprintf(stderr, "-to: %v\n", err)
		fs.Usage()
		return errUsage
	}
	if o.Size < 200 {
		o.Size = 200
	}
	o.To, o.Dial, o.Run = rcpts, c.dialOpts(), c.runOpts(stderr)
	return failed(RunSMTP(o, stdout))
}

func cmdIMAP(args []string, stdout, stderr io.Writer) error {
	var c common
	o := IMAPOpts{AppendN: 4096}
	fs := newFlagSet("imap", "imap -addr HOST:PORT [-c 10] [-d 30s | -n CYCLES] -users SPEC -pass PASS [flags]\n\n"+
		"Each cycle is one session with the realistic mix: LOGIN, SELECT INBOX, FETCH the last 50\n"+
		"(ENVELOPE FLAGS), FETCH one BODY.PEEK[], STORE +FLAGS (\\Seen) on three, SEARCH UNSEEN,\n"+
		"APPEND 4 KB, STORE \\Deleted + EXPUNGE of it, IDLE for -idle, LOGOUT. Users are taken in turn.", stderr)
	c.register(fs, "127.0.0.1:143", true)
	c.needND = true
	fs.IntVar(&c.c, "c", 10, "concurrent clients")
	fs.Int64Var(&c.n, "n", 0, "cycles in total (0: until -d is over)")
	fs.DurationVar(&c.d, "d", 0, "run for this long")
	fs.DurationVar(&o.Idle, "idle", 100*time.Millisecond, "time spent in IDLE per cycle (0: no IDLE)")
	fs.IntVar(&o.AppendN, "append-size", 4096, "size of the APPENDed message")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	o.Users, o.Pass, o.Dial, o.Run = c.parsedUsers, c.pass, c.dialOpts(), c.runOpts(stderr)
	return failed(RunIMAP(o, stdout))
}

func cmdPOP3(args []string, stdout, stderr io.Writer) error {
	var c common
	var o POP3Opts
	fs := newFlagSet("pop3", "pop3 -addr HOST:PORT [-c 10] -users SPEC -pass PASS [-d 30s | -n SESSIONS] [-keep] [flags]\n\n"+
		"One session per user: USER/PASS, STAT, UIDL, RETR all, DELE all, QUIT. Without -d or -n every\n"+
		"user is served once (their mailboxes are emptied unless -keep). Reports RETR/s and bytes/s.", stderr)
	c.register(fs, "127.0.0.1:110", true)
	fs.IntVar(&c.c, "c", 10, "concurrent clients")
	fs.Int64Var(&c.n, "n", 0, "sessions in total (0: each user once, or until -d is over)")
	fs.DurationVar(&c.d, "d", 0, "run for this long, cycling through the users")
	fs.BoolVar(&o.Keep, "keep", false, "RSET before QUIT so nothing is deleted (for repeated or timed runs)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	o.Users, o.Pass, o.Dial, o.Run = c.parsedUsers, c.pass, c.dialOpts(), c.runOpts(stderr)
	return failed(RunPOP3(o, stdout))
}

func cmdIdle(proto string) func([]string, io.Writer, io.Writer) error {
	return func(args []string, stdout, stderr io.Writer) error {
		var c common
		o := IdleOpts{Proto: proto, Stderr: stderr}
		what := map[string]string{
			"imap": "logged in, INBOX selected, in IDLE",
			"pop3": "logged in (TRANSACTION state)",
			"smtp": "after EHLO",
		}[proto]
		fs := newFlagSet(proto+"-idle", proto+"-idle -addr HOST:PORT -n 1000 [-d 30s] [flags]\n\n"+
			"Opens N connections, each "+what+", prints \"ready: N ... established\" when all are\n"+
			"open (measure the server's memory then), holds them for -d, closes them.", stderr)
		def := map[string]string{"imap": "127.0.0.1:143", "pop3": "127.0.0.1:110", "smtp": "127.0.0.1:25"}[proto]
		c.register(fs, def, proto != "smtp")
		var n int
		fs.IntVar(&n, "n", 1000, "connections to open and hold")
		fs.IntVar(&c.c, "c", 20, "connections being opened at once")
		fs.DurationVar(&c.d, "d", 30*time.Second, "how long to hold them once all are open")
		if err := c.parse(fs, args); err != nil {
			return err
		}
		o.Dial, o.N, o.Parallel, o.Hold, o.Users, o.Pass = c.dialOpts(), n, c.c, c.d, c.parsedUsers, c.pass
		o.Dial.Timeout = c.timeout
		o.Progress = c.showProgress(stderr)
		if got := RunIdle(o, stdout); got < n {
			return fmt.Errorf("only %d of %d connections were established", got, n)
		}
		return nil
	}
}

func cmdSeed(args []string, stdout, stderr io.Writer) error {
	var c common
	o := SeedOpts{Stderr: stderr}
	var smtpAddr, lmtpAddr string
	fs := newFlagSet("seed", "seed (-smtp HOST:PORT | -lmtp HOST:PORT) -users SPEC [-count 200] -mbox FILE [flags]\n\n"+
		"Delivers -count messages from the mbox (gen_mbox.py output, reused in turn) to every user,\n"+
		"-batch recipients per transaction, to fill mailboxes for the pop3 and imap workloads.\n"+
		"Use -lmtp for Dovecot (users are then its login names, e.g. bench%d:1-100).", stderr)
	c.register(fs, "-", true)
	fs.StringVar(&smtpAddr, "smtp", "", "deliver over SMTP to `host:port`")
	fs.StringVar(&lmtpAddr, "lmtp", "", "deliver over LMTP to `host:port`")
	fs.IntVar(&o.Count, "count", 200, "messages per user")
	fs.StringVar(&o.Mbox, "mbox", "", "mbox `file` to take messages from")
	fs.StringVar(&o.From, "from", "seed@client.test", "envelope sender")
	fs.IntVar(&o.Batch, "batch", 20, "recipients per transaction")
	fs.IntVar(&c.c, "c", 4, "parallel sessions")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if (smtpAddr == "") == (lmtpAddr == "") || o.Mbox == "" || o.Batch < 1 {
		fmt.Fprintln(stderr, "give exactly one of -smtp and -lmtp, a -mbox and -batch >= 1")
		fs.Usage()
		return errUsage
	}
	c.addr = smtpAddr + lmtpAddr
	o.LMTP = lmtpAddr != ""
	o.Users, o.Dial, o.Parallel = c.parsedUsers, c.dialOpts(), c.c
	o.Progress = c.showProgress(stderr)
	if strings.HasPrefix(o.Mbox, "~") {
		return fmt.Errorf("-mbox %q: give a path the shell expanded", o.Mbox)
	}
	return RunSeed(o, stdout)
}
