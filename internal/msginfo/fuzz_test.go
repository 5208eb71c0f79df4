package msginfo

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never fails on bytes in memory, never panics,
// keeps its offset invariants and returns JSON-encodable data; and that
// HeaderFields copes with whatever header it is given.
func FuzzParse(f *testing.F) {
	for _, s := range []string{simpleMsg, alternativeMsg, mixedMsg, rfc822Msg, crlf(mixedMsg)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseBytes(b)
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if info.Size != int64(len(b)) {
			t.Fatalf("size %d, want %d", info.Size, len(b))
		}
		checkInvariants(t, info, string(b))
		if _, err := json.Marshal(info); err != nil {
			t.Fatalf("json: %v", err)
		}
		if n := len([]rune(info.Preview)); n > previewRunes {
			t.Fatalf("preview of %d runes", n)
		}
		hf := HeaderFields(b[:info.HeaderSize], []string{"subject", "from"}, false)
		if !strings.HasSuffix(string(hf), "\r\n") {
			t.Fatalf("HeaderFields %q without its blank line", hf)
		}
		HeaderFields(b[:info.HeaderSize], []string{"subject"}, true)
	})
}

func benchmarkParse(b *testing.B, msg []byte) {
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseBytes(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// benchMessage returns a multipart message of about n bytes: a text and an
// HTML alternative and a base64 attachment filling the rest.
func benchMessage(n int) []byte {
	var s strings.Builder
	s.WriteString(crlf(`Return-Path: <alice@example.com>
Received: from mail.example.com (mail.example.com [192.0.2.1])
	by mx.example.org with ESMTPS id 4F2A1B; Mon, 2 Jan 2006 15:04:05 +0000
DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s1; h=from:to:subject;
	bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR
From: "Alice Example" <alice@example.com>
To: Bob <bob@example.org>, team: carol@example.net, dave@example.net;
Subject: =?UTF-8?Q?Quarterly_r=C3=A9sum=C3=A9?=
Date: Mon, 2 Jan 2006 15:04:05 +0000
Message-ID: <1234@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed"

--mixed
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

`))
	for range 15 {
		s.WriteString("Here is the summary of the quarter, with figures and caf=C3=A9 notes.\r\n")
	}
	s.WriteString(crlf("--alt\nContent-Type: text/html; charset=utf-8\n\n<html><body><p>Here is the summary.</p></body></html>\n--alt--\n\n--mixed\nContent-Type: application/pdf; name=\"r.pdf\"\nContent-Disposition: attachment; filename=\"r.pdf\"\nContent-Transfer-Encoding: base64\n\n"))
	for s.Len() < n-20 {
		s.WriteString(strings.Repeat("QUJD", 19) + "\r\n")
	}
	s.WriteString("--mixed--\r\n")
	return []byte(s.String())
}

func BenchmarkParse4K(b *testing.B)   { benchmarkParse(b, benchMessage(4<<10)) }
func BenchmarkParse100K(b *testing.B) { benchmarkParse(b, benchMessage(100<<10)) }
