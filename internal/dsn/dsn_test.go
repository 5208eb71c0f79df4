package dsn

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const original = "From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: hello\r\nMessage-ID: <1@a.test>\r\n\r\nHi Bob,\r\nsee you.\r\n"

func TestGolden(t *testing.T) {
	arrival := time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC)
	base := Report{
		ReportingMTA: "mx.a.test", To: "alice@a.test", Arrival: arrival, Date: arrival.Add(time.Hour),
		Recipients: []Recipient{{
			Final: "bob@b.test", Original: "rfc822;bob@b.test", Action: Failed, Status: "5.1.1",
			RemoteMTA: "mx.b.test", Diagnostic: "550 5.1.1 no such user\r\nreally", LastAttempt: arrival.Add(time.Hour),
		}, {
			Final: "carol@b.test", Action: Failed, Status: "5.4.4", Diagnostic: "b.test: domain accepts no mail (null MX)",
		}},
	}
	full := base
	full.Ret, full.EnvID = "FULL", "env-1"
	delayed := base
	delayed.Recipients = []Recipient{{Final: "bob@b.test", Action: Delayed, Status: "4.4.1",
		RemoteMTA: "mx.b.test", Diagnostic: "connection refused"}}
	for name, r := range map[string]Report{"hdrs": base, "full": full, "delayed": delayed} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Write(&b, r, strings.NewReader(original), int64(len(original))); err != nil {
				t.Fatal(err)
			}
			// It must parse as mail with three parts.
			mr, err := mail.CreateReader(bytes.NewReader(b.Bytes()))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			parts := 0
			for {
				if _, err := mr.NextPart(); err != nil {
					break
				}
				parts++
			}
			if parts != 3 {
				t.Errorf("%d parts, want 3", parts)
			}
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(b.Bytes(), want) {
				t.Errorf("report differs from %s (run with -update after checking):\n%s", path, b.Bytes())
			}
		})
	}
}

func TestFullTooBigSendsHeaders(t *testing.T) {
	var b bytes.Buffer
	r := Report{ReportingMTA: "m", To: "a@b", Ret: "FULL", MaxFull: 10,
		Recipients: []Recipient{{Final: "x@y", Action: Failed, Status: "5.0.0"}}}
	if err := Write(&b, r, strings.NewReader(original), int64(len(original))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "text/rfc822-headers") || strings.Contains(b.String(), "see you") {
		t.Errorf("a too big original was returned whole:\n%s", b.String())
	}
}
