package mime7bit

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// bigMessage is a message of about n octets: 8-bit text and a binary
// attachment filling the rest.
func bigMessage(n int) []byte {
	var b bytes.Buffer
	b.WriteString(crlf("From: a@here.test\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"))
	for range 200 {
		b.WriteString("Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln, eine Zeile mit Umlauten: \xc3\xa4\xc3\xb6\xc3\xbc.\r\n")
	}
	b.WriteString(crlf("--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n"))
	for i := 0; b.Len() < n-20; i++ {
		b.WriteByte(byte(i*131 + i>>8))
	}
	b.WriteString("\r\n--b--\r\n")
	return b.Bytes()
}

// manyParts is a multipart of n small 8-bit parts.
func manyParts(n int) []byte {
	var b strings.Builder
	b.WriteString(crlf("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"))
	for range n {
		b.WriteString(crlf("--b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nK\xc3\xb6ln\n"))
	}
	b.WriteString("--b--\r\n")
	return []byte(b.String())
}

func benchmarkConvert(b *testing.B, msg []byte) {
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		c, err := Prepare(bytes.NewReader(msg), int64(len(msg)), Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConvert10M(b *testing.B)       { benchmarkConvert(b, bigMessage(10<<20)) }
func BenchmarkConvertManyParts(b *testing.B) { benchmarkConvert(b, manyParts(5000)) }

func BenchmarkClassify10M(b *testing.B) {
	msg := bigMessage(10 << 20)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Classify(bytes.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
	}
}
