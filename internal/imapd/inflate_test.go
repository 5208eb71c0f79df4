package imapd

import (
	"bytes"
	"compress/flate"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"

	"github.com/ternmail/tern/internal/testenv"
)

func TestInflateRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	text := bytes.Repeat([]byte("a NOOP\r\nb FETCH 1:* (FLAGS BODY.PEEK[])\r\n"), 3000)
	random := make([]byte, 100000)
	for i := range random {
		random[i] = byte(rng.IntN(256))
	}
	for _, data := range [][]byte{nil, []byte("x"), text, random, append(append([]byte{}, text...), random...)} {
		for _, level := range []int{flate.NoCompression, flate.BestSpeed, flate.DefaultCompression, flate.BestCompression, flate.HuffmanOnly} {
			var buf bytes.Buffer
			w, _ := flate.NewWriter(&buf, level)
			for i := 0; i < len(data); i += 7000 {
				w.Write(data[i:min(i+7000, len(data))])
				w.Flush()
			}
			w.Close()
			got, err := io.ReadAll(newInflater(&buf))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("level %d, %d bytes: got %d bytes, %v", level, len(data), len(got), err)
			}
		}
	}
}

// TestInflatePartialFlush: data flushed with zlib's Z_PARTIAL_FLUSH (as
// mbsync sends it) is readable before any further input arrives.
func TestInflatePartialFlush(t *testing.T) {
	python := testenv.LookPath(t, "python3")
	out, err := exec.Command(python, "-c", `import zlib,sys
c = zlib.compressobj(6, zlib.DEFLATED, -15)
sys.stdout.buffer.write(c.compress(b"a NOOP\r\n") + c.flush(zlib.Z_PARTIAL_FLUSH))`).Output()
	if err != nil {
		t.Fatal(err)
	}
	f := newInflater(bytes.NewReader(out))
	buf := make([]byte, 100)
	n, err := f.Read(buf)
	if err != nil || string(buf[:n]) != "a NOOP\r\n" {
		t.Fatalf("got %q, %v", buf[:n], err)
	}
}

func FuzzInflate(f *testing.F) {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.DefaultCompression)
	w.Write([]byte("hello hello hello world"))
	w.Close()
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		io.Copy(io.Discard, io.LimitReader(newInflater(bytes.NewReader(data)), 1<<20))
	})
}
