package mime7bit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime/quotedprintable"
	"testing"

	"github.com/ternmail/tern/internal/msginfo"
)

// FuzzConvert: Prepare fails only with ErrUnconvertible; otherwise the
// output is 7-bit in lines of at most 998 octets, the same on every
// write, has the structure of the input, each leaf decodes to what the
// input's leaf held, and converting it again changes nothing. Seeds are
// in testdata/fuzz/FuzzConvert.
func FuzzConvert(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		if _, err := Classify(bytes.NewReader(in)); err != nil {
			t.Fatalf("Classify: %v", err)
		}
		c, err := Prepare(bytes.NewReader(in), int64(len(in)), Options{})
		if err != nil {
			if !errors.Is(err, ErrUnconvertible) {
				t.Fatalf("Prepare: %v", err)
			}
			return
		}
		out := writeAll(t, c)
		if again := writeAll(t, c); !bytes.Equal(out, again) {
			t.Fatalf("two writes differ:\n%q\n%q", out, again)
		}
		check7bit(t, out)
		info, err := msginfo.ParseBytes(out)
		if err != nil {
			t.Fatal(err)
		}
		sameLeaves(t, c, in, c.root, out, &info.Body)

		c2, err := Prepare(bytes.NewReader(out), int64(len(out)), Options{})
		if err != nil {
			t.Fatalf("converting the output: %v\n%q", err, out)
		}
		if out2 := writeAll(t, c2); !bytes.Equal(out, out2) {
			t.Fatalf("converting the output changed it:\n%q\n%q", out, out2)
		}
	})
}

func writeAll(t *testing.T, c *Conversion) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	return b.Bytes()
}

// sameLeaves walks the input's parts as planned and the output's as
// msginfo parses them, and compares each leaf's decoded content.
func sameLeaves(t *testing.T, c *Conversion, in []byte, ip *msginfo.Part, out []byte, op *msginfo.Part) {
	t.Helper()
	p := c.plans[ip]
	switch p.kind {
	case multipart:
		if len(op.Children) != len(ip.Children) {
			t.Fatalf("%d parts became %d:\n%q", len(ip.Children), len(op.Children), out)
		}
		for i := range ip.Children {
			sameLeaves(t, c, in, &ip.Children[i], out, &op.Children[i])
		}
		return
	case enclosed:
		if op.Message == nil {
			t.Fatalf("enclosed message lost:\n%q", out)
		}
		sameLeaves(t, c, in, ip.Message, out, op.Message)
		return
	}
	was, now := in[ip.BodyStart:ip.End], out[op.BodyStart:op.End]
	var want, got []byte
	var err error
	switch p.kind {
	case copyBody:
		want, got = was, now
	case quote:
		want = was
		got, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(now)))
	case base64Enc:
		want = was
		got, err = base64.StdEncoding.DecodeString(string(bytes.ReplaceAll(now, []byte("\r\n"), nil)))
	case rewrap:
		want = bytes.Map(func(r rune) rune {
			if 'A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '+' || r == '/' || r == '=' {
				return r
			}
			return -1
		}, was)
		got = bytes.ReplaceAll(now, []byte("\r\n"), nil)
	case requote:
		if longWS(was) {
			return // whitespace too long to hold is kept: see maxHeldWS
		}
		want = lenientQP(was)
		got, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(now)))
	}
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("leaf (plan %d) decodes to %q, %v; want %q\nin:  %q\nout: %q", p.kind, got, err, want, in, out)
	}
}

// lenientQP is the decoding requoteWriter follows, written line by line
// as a reference.
func lenientQP(b []byte) []byte {
	var out []byte
	for len(b) > 0 {
		content, eol := b, []byte(nil)
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			content, eol, b = b[:i], b[i:i+1], b[i+1:]
			if bytes.HasSuffix(content, []byte("\r")) {
				content, eol = content[:len(content)-1], []byte("\r\n")
			}
		} else {
			b = nil
		}
		content = bytes.TrimRight(content, " \t")
		soft := bytes.HasSuffix(content, []byte("="))
		if soft {
			content = content[:len(content)-1]
		}
		for i := 0; i < len(content); i++ {
			if content[i] == '=' && i+2 < len(content) && isHex(content[i+1]) && isHex(content[i+2]) {
				out = append(out, unhex(content[i+1])<<4|unhex(content[i+2]))
				i += 2
				continue
			}
			out = append(out, content[i])
		}
		if !soft {
			out = append(out, eol...)
		}
	}
	return out
}

func longWS(b []byte) bool {
	run := 0
	for _, c := range b {
		if c != ' ' && c != '\t' {
			run = 0
		} else if run++; run >= maxHeldWS {
			return true
		}
	}
	return false
}
