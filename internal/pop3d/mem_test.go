package pop3d

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/store"
	"github.com/ternmail/tern/internal/store/sqlite"
	"github.com/ternmail/tern/internal/testenv"
)

// lookupLogin logs in any existing account without a password check, so
// tests with many accounts do not pay for argon2id.
func lookupLogin(st store.Store) loginFunc {
	return func(ctx context.Context, _ netip.Addr, user, _ string) (store.Account, error) {
		a, err := st.GetAccount(ctx, user)
		if errors.Is(err, store.ErrNotFound) {
			return store.Account{}, auth.ErrInvalidCredentials
		}
		return a, err
	}
}

// TestIdleMemory measures what an idle logged-in session costs the
// server, heap and stack, with a 20-message maildrop
// and after a RETR (which borrows and returns the large buffers).
func TestIdleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	const (
		sessions = 100
		limit    = 50 << 10
	)
	ctx := context.Background()
	st, err := sqlite.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.AddDomain(ctx, testDomain); err != nil {
		t.Fatal(err)
	}
	body := "Subject: x\r\n\r\n" + strings.Repeat("a line of the body of this message\r\n", 2000)
	blob, err := st.Spool(ctx, strings.NewReader(body), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var targets []store.Target
	for i := range sessions {
		a, err := st.AddAccount(ctx, store.Account{Address: fmt.Sprintf("u%d@%s", i, testDomain), PasswordHash: "x"})
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, store.Target{AccountID: a.ID, Mailbox: "INBOX"})
	}
	for range 20 {
		if _, err := st.Deliver(ctx, &store.Delivery{Blob: blob, Local: targets}); err != nil {
			t.Fatal(err)
		}
	}
	tlsCfg, _ := selfSigned(t)
	py := testenv.LookPath(t, "python3")

	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			s, err := newServer(Config{Hostname: "pop.example.test", TLS: tlsCfg, AllowPlaintextAuth: true, MaxConnsPerIP: 1000},
				st, nil, lookupLogin(st), nil)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if useTLS {
				go s.ServeTLS(ln)
			} else {
				go s.Serve(ln)
			}
			defer s.Shutdown(ctx)

			// The clients run in another process, so only the server's
			// memory is counted.
			before := memInUse()
			cmd := exec.Command(py, "-c", idleClients, ln.Addr().String(), fmt.Sprint(useTLS), fmt.Sprint(sessions))
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if line != "ready\n" {
				t.Fatalf("clients: %q %v", line, err)
			}
			after := memInUse()
			stdin.Close()
			if err := cmd.Wait(); err != nil {
				t.Fatalf("clients: %v", err)
			}
			per := (after - before) / sessions
			t.Logf("idle logged-in session (tls=%v): %d bytes", useTLS, per)
			if per > limit {
				t.Errorf("an idle session takes %d bytes, want under %d", per, limit)
			}
		})
	}
}

// idleClients logs in u0…u(n-1), reads message 1, and idles until stdin
// closes.
const idleClients = `
import poplib, ssl, sys
addr, use_tls, n = sys.argv[1], sys.argv[2] == "true", int(sys.argv[3])
host, port = addr.rsplit(":", 1)
ctx = ssl._create_unverified_context()
conns = []
for i in range(n):
    p = poplib.POP3_SSL(host, int(port), context=ctx) if use_tls else poplib.POP3(host, int(port))
    p.user("u%d@example.test" % i)
    p.pass_("x")
    p.retr(1)
    p.stat()
    conns.append(p)
print("ready", flush=True)
sys.stdin.read()
for p in conns:
    p.quit()
`

func memInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc + m.StackInuse)
}
