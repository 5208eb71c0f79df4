package auth_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/auth"
	"github.com/ternmail/tern/internal/testenv"
)

// The exchange of RFC 7677 §3: user "user", password "pencil".
const (
	rfcFirst       = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
	rfcServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	rfcNonce       = "rOprNGfwEbeRWgbNEkqO" + rfcServerNonce
	rfcServerFirst = "r=" + rfcNonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	rfcProof       = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	rfcFinal       = "c=biws,r=" + rfcNonce + ",p=" + rfcProof
	rfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
)

// testKeys are the keys keyLogin knows: RFC 7677's user, and
// alice@example.org with password "pw".
var testKeys = sync.OnceValue(func() map[string]accounts.SCRAMKeys {
	derive := func(pw, salt string) accounts.SCRAMKeys {
		s, _ := base64.StdEncoding.DecodeString(salt)
		k, err := accounts.DeriveSCRAMKeys(pw, s, 4096)
		if err != nil {
			panic(err)
		}
		return k
	}
	return map[string]accounts.SCRAMKeys{
		"user":              derive("pencil", "W22ZaJ0SNY7soEsUEjb6gQ=="),
		"alice@example.org": derive("pw", "c2FsdHNhbHRzYWx0c2FsdA=="),
	}
})

// keyLogin is a SCRAMLogin over testKeys, recording what it is asked.
// Unknown users get keys no proof matches.
type keyLogin struct {
	user  string
	calls []string // "keys", "verify ok", "verify bad", "done"
}

func newKeyLogin(testing.TB) *keyLogin { return &keyLogin{} }

func (k *keyLogin) Keys(user string) (accounts.SCRAMKeys, error) {
	k.user = user
	k.calls = append(k.calls, "keys")
	if keys, ok := testKeys()[user]; ok {
		return keys, nil
	}
	return accounts.SCRAMKeys{Salt: []byte("0123456789abcdef"), Iterations: 4096,
		StoredKey: make([]byte, 32), ServerKey: make([]byte, 32)}, nil
}

func (k *keyLogin) Verify(ok bool) error {
	if !ok {
		k.calls = append(k.calls, "verify bad")
		return errBad
	}
	k.calls = append(k.calls, "verify ok")
	return nil
}

func (k *keyLogin) Done() error {
	k.calls = append(k.calls, "done")
	return nil
}

// TestSCRAMRFC7677 runs the server through RFC 7677 §3's exchange with
// its nonce: the server's messages must be the RFC's, octet for octet.
func TestSCRAMRFC7677(t *testing.T) {
	k := newKeyLogin(t)
	s := auth.NewSCRAMServer(k, rfcServerNonce)
	run := func(resp string, wantChal string, wantDone bool) {
		t.Helper()
		ch, done, err := s.Next([]byte(resp))
		if err != nil || string(ch) != wantChal || done != wantDone {
			t.Fatalf("Next(%q) = %q, %v, %v; want %q, %v", resp, ch, done, err, wantChal, wantDone)
		}
	}
	run(rfcFirst, rfcServerFirst, false)
	run(rfcFinal, rfcServerFinal, false)
	run("", "", true)
	if k.user != "user" || !slices.Equal(k.calls, []string{"keys", "verify ok", "done"}) {
		t.Fatalf("asked %q: %v", k.user, k.calls)
	}
	if _, done, err := s.Next(nil); err == nil || !done {
		t.Fatalf("Next after the end: %v, %v", done, err)
	}

	// One bit of the proof changed: refused, and no ServerSignature.
	proof, _ := base64.StdEncoding.DecodeString(rfcProof)
	proof[0] ^= 1
	k = newKeyLogin(t)
	s = auth.NewSCRAMServer(k, rfcServerNonce)
	run(rfcFirst, rfcServerFirst, false)
	ch, _, err := s.Next([]byte("c=biws,r=" + rfcNonce + ",p=" + base64.StdEncoding.EncodeToString(proof)))
	if !errors.Is(err, errBad) || len(ch) != 0 || !slices.Equal(k.calls, []string{"keys", "verify bad"}) {
		t.Fatalf("altered proof: %q, %v, calls %v", ch, err, k.calls)
	}
}

// TestSCRAMClientRFC7677 checks the test client, written apart from the
// server, against the same exchange.
func TestSCRAMClientRFC7677(t *testing.T) {
	cl := &testenv.SCRAMClient{User: "user", Password: "pencil", Nonce: "rOprNGfwEbeRWgbNEkqO"}
	mech, ir, _ := cl.Start()
	if mech != "SCRAM-SHA-256" || string(ir) != rfcFirst {
		t.Fatalf("Start = %s, %q", mech, ir)
	}
	if final, err := cl.Next([]byte(rfcServerFirst)); err != nil || string(final) != rfcFinal {
		t.Fatalf("client-final-message %q, %v", final, err)
	}
	if resp, err := cl.Next([]byte(rfcServerFinal)); err != nil || resp == nil || len(resp) != 0 {
		t.Fatalf("answer to server-final-message %q, %v", resp, err)
	}
	cl.Start()
	cl.Next([]byte(rfcServerFirst))
	if _, err := cl.Next([]byte("v=" + base64.StdEncoding.EncodeToString(make([]byte, 32)))); err == nil {
		t.Fatal("client accepted a wrong server signature")
	}
}

// TestSCRAMClient runs the test client against the server, with the
// options a client may use.
func TestSCRAMClient(t *testing.T) {
	for _, c := range []struct {
		name string
		cl   *testenv.SCRAMClient
		user string // as Keys must see it
	}{
		{"plain", &testenv.SCRAMClient{User: "alice@example.org", Password: "pw"}, "alice@example.org"},
		{"y flag", &testenv.SCRAMClient{User: "alice@example.org", Password: "pw", Flag: "y"}, "alice@example.org"},
		{"authzid", &testenv.SCRAMClient{User: "alice@example.org", Password: "pw", Authzid: "ALICE@example.org"}, "alice@example.org"},
		{"SASLprep", &testenv.SCRAMClient{User: "ali\u00adce@example.org", Password: "pw"}, "alice@example.org"},
		{"escapes", &testenv.SCRAMClient{User: "a,b=c@example.org", Password: "pw"}, "a,b=c@example.org"},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := newKeyLogin(t)
			s, _ := auth.NewSASLServer("SCRAM-SHA-256", nil, k)
			err := exchange(t, s, c.cl)
			if k.user != c.user {
				t.Fatalf("Keys asked for %q, want %q", k.user, c.user)
			}
			if _, known := testKeys()[c.user]; known {
				if err != nil || !slices.Equal(k.calls, []string{"keys", "verify ok", "done"}) {
					t.Fatalf("exchange: %v, calls %v", err, k.calls)
				}
			} else if !errors.Is(err, errBad) {
				t.Fatalf("unknown user: %v", err)
			}
		})
	}
	// No initial response: the server asks with an empty challenge.
	s, _ := auth.NewSASLServer("SCRAM-SHA-256", nil, newKeyLogin(t))
	if ch, done, err := s.Next(nil); len(ch) != 0 || done || err != nil {
		t.Fatalf("Next(nil) = %q, %v, %v", ch, done, err)
	}
	if err := exchange(t, s, &testenv.SCRAMClient{User: "alice@example.org", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
}

// exchange runs cl against s to the end and returns the server's error.
func exchange(t *testing.T, s sasl.Server, cl sasl.Client) error {
	t.Helper()
	_, resp, err := cl.Start()
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		ch, done, err := s.Next(resp)
		if err != nil || done {
			return err
		}
		if resp, err = cl.Next(ch); err != nil {
			t.Fatalf("client: %v", err)
		}
	}
	t.Fatal("exchange does not end")
	return nil
}

func TestSCRAMMalformed(t *testing.T) {
	long := strings.Repeat("a", 5000)
	final := func(cb, nonce, proof string) string { return "c=" + cb + ",r=" + nonce + ",p=" + proof }
	for _, c := range []struct {
		name  string
		msgs  []string // the last one fails
		want  string   // in the error text; "" for ErrAuthzid
		calls []string
	}{
		{"empty", []string{""}, "empty client-first-message", nil},
		{"too long", []string{"n,,n=xq,r=" + long}, "client-first-message too long", nil},
		{"invalid UTF-8", []string{"n,,n=x\xffq,r=abc"}, "not UTF-8", nil},
		{"NUL", []string{"n,,n=x\x00q,r=abc"}, "not UTF-8", nil},
		{"channel binding", []string{"p=tls-server-end-point,,n=xq,r=abc"}, "channel binding is not supported", nil},
		{"bad flag", []string{"x,,n=xq,r=abc"}, "bad channel binding flag", nil},
		{"no gs2 header", []string{"n=xq,r=abc"}, "bad channel binding flag", nil},
		{"short gs2 header", []string{"n"}, "incomplete gs2 header", nil},
		{"bad authzid", []string{"n,n=xq,r=abc"}, "bad authorization identity", nil},
		{"mandatory extension", []string{"n,,m=x,n=xq,r=abc"}, "mandatory extensions", nil},
		{"no nonce", []string{"n,,n=xq"}, "must start with n= and r=", nil},
		{"no username", []string{"n,,r=abc"}, "must start with n= and r=", nil},
		{"order", []string{"n,,r=abc,n=xq"}, "must start with n= and r=", nil},
		{"empty nonce", []string{"n,,n=xq,r="}, "bad client nonce", nil},
		{"nonce with space", []string{"n,,n=xq,r=a b"}, "bad client nonce", nil},
		{"long nonce", []string{"n,,n=xq,r=" + strings.Repeat("a", 600)}, "bad client nonce", nil},
		{"bad escape", []string{"n,,n=x=2Xq,r=abc"}, `bad "=" escape`, nil},
		{"cut escape", []string{"n,,n=xq=,r=abc"}, `bad "=" escape`, nil},
		{"empty username", []string{"n,,n=,r=abc"}, "SASLprep", nil},
		{"prohibited username", []string{"n,,n=x\u0007q,r=abc"}, "SASLprep", nil},
		{"empty attribute", []string{"n,,n=xq,,r=abc"}, "bad attribute", nil},
		{"bad attribute", []string{"n,,n=xq,r=abc,1=x"}, "bad attribute", nil},
		{"other authzid", []string{"n,a=bob@example.org,n=alice@example.org,r=abc"}, "", nil},

		{"final empty", []string{rfcFirst, ""}, "empty client-final-message", []string{"keys"}},
		{"final too long", []string{rfcFirst, final("biws", rfcNonce, long)}, "client-final-message too long", []string{"keys"}},
		{"no proof", []string{rfcFirst, "c=biws,r=" + rfcNonce}, "no proof", []string{"keys"}},
		{"final order", []string{rfcFirst, "r=" + rfcNonce + ",c=biws,p=" + rfcProof}, "must start with c= and r=", []string{"keys"}},
		{"wrong binding", []string{rfcFirst, final("eSws", rfcNonce, rfcProof)}, "does not match the gs2 header", []string{"keys"}},
		{"binding base64", []string{rfcFirst, final("b!ws", rfcNonce, rfcProof)}, "c=) is not valid base64", []string{"keys"}},
		{"nonce mismatch", []string{rfcFirst, final("biws", rfcNonce+"x", rfcProof)}, "nonce (r=) does not match", []string{"keys"}},
		{"client nonce only", []string{rfcFirst, final("biws", "rOprNGfwEbeRWgbNEkqO", rfcProof)}, "nonce (r=) does not match", []string{"keys"}},
		{"proof base64", []string{rfcFirst, final("biws", rfcNonce, "dHzb!")}, "p=) is not valid base64", []string{"keys"}},
		{"proof length", []string{rfcFirst, final("biws", rfcNonce, "AAAA")}, "wrong length", []string{"keys"}},
		{"after final", []string{rfcFirst, rfcFinal, "junk"}, "data after the server-final-message", []string{"keys", "verify ok"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := newKeyLogin(t)
			s := auth.NewSCRAMServer(k, rfcServerNonce)
			var err error
			for i, m := range c.msgs {
				var done bool
				_, done, err = s.Next([]byte(m))
				if last := i == len(c.msgs)-1; (err != nil) != last || done != last {
					t.Fatalf("message %d: done %v, err %v", i, done, err)
				}
			}
			switch {
			case c.want == "":
				if !errors.Is(err, auth.ErrAuthzid) {
					t.Fatalf("error %v, want ErrAuthzid", err)
				}
			case !errors.Is(err, auth.ErrMalformed) || !strings.Contains(err.Error(), c.want):
				t.Fatalf("error %v, want ErrMalformed saying %q", err, c.want)
			case strings.Contains(err.Error(), "xq") || strings.Contains(err.Error(), "abc") || strings.Contains(err.Error(), "rOpr"):
				t.Fatalf("error %q repeats the client's data", err)
			}
			if !slices.Equal(k.calls, c.calls) {
				t.Fatalf("calls %v, want %v", k.calls, c.calls)
			}
			if _, _, err := s.Next([]byte(rfcFinal)); err == nil {
				t.Fatal("Next after a failure succeeded")
			}
		})
	}
}

// FuzzSCRAM feeds the server arbitrary client messages after the ones of
// RFC 7677's exchange (seeds in testdata/fuzz/FuzzSCRAM). Beyond not
// panicking: the server never signs (v=) or finishes unless the proof
// was verified, every error after the first is an error again, and a
// server-first-message carries the client's nonce.
func FuzzSCRAM(f *testing.F) {
	testKeys()
	f.Fuzz(func(t *testing.T, first, final, ack []byte) {
		k := newKeyLogin(t)
		s := auth.NewSCRAMServer(k, rfcServerNonce)
		ended := false
		for i, msg := range [][]byte{first, final, ack, nil} {
			ch, done, err := s.Next(msg)
			if ended {
				if err == nil {
					t.Fatalf("step %d: Next after the end succeeded", i)
				}
				continue
			}
			ended = done || err != nil
			if bytes.HasPrefix(ch, []byte("v=")) && !slices.Contains(k.calls, "verify ok") {
				t.Fatalf("step %d: server signature sent without a verified proof: %v", i, k.calls)
			}
			if slices.Contains(k.calls, "done") && !slices.Contains(k.calls, "verify ok") {
				t.Fatalf("step %d: done without a verified proof: %v", i, k.calls)
			}
			if i == 0 && err == nil && len(first) > 0 {
				nonce, _, _ := strings.Cut(strings.TrimPrefix(string(ch), "r="), ",")
				if !bytes.Contains(first, []byte("r="+strings.TrimSuffix(nonce, rfcServerNonce))) {
					t.Fatalf("server-first %q lacks the client nonce of %q", ch, first)
				}
			}
			if done && err == nil && !slices.Equal(k.calls, []string{"keys", "verify ok", "done"}) {
				t.Fatalf("exchange ended well with calls %v", k.calls)
			}
		}
	})
}
