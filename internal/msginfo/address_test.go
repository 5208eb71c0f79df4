package msginfo

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseAddressList(t *testing.T) {
	tests := []struct {
		in   string
		want []Address
	}{
		{"", nil},
		{"a@b.c", []Address{{Mailbox: "a", Host: "b.c"}}},
		{`"Doe, John" <john.doe@example.com>`, []Address{{Name: "Doe, John", Mailbox: "john.doe", Host: "example.com"}}},
		{"John Q. Public <jqp@x.org>, mary@x.org (Mary Smith)", []Address{
			{Name: "John Q. Public", Mailbox: "jqp", Host: "x.org"},
			{Name: "Mary Smith", Mailbox: "mary", Host: "x.org"}}},
		{"=?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>", []Address{{Name: "André Pirard", Mailbox: "PIRARD", Host: "vm1.ulg.ac.be"}}},
		{"=?utf-8?B?5pel5pys?= =?utf-8?B?6Kqe?= <n@jp>", []Address{{Name: "日本語", Mailbox: "n", Host: "jp"}}},
		{"undisclosed-recipients:;", []Address{{Mailbox: "undisclosed-recipients"}, {}}},
		{"A Group:Ed <ed@x>,  joe@y;, z@w", []Address{
			{Mailbox: "A Group"}, {Name: "Ed", Mailbox: "ed", Host: "x"}, {Mailbox: "joe", Host: "y"}, {}, {Mailbox: "z", Host: "w"}}},
		{"unterminated: a@b", []Address{{Mailbox: "unterminated"}, {Mailbox: "a", Host: "b"}, {}}},
		{"<@route1,@route2:user@host>", []Address{{Mailbox: "user", Host: "host"}}},
		{"a@b c@d", []Address{{Mailbox: "a", Host: "b"}, {Mailbox: "c", Host: "d"}}},
		{"postmaster", []Address{{Mailbox: "postmaster", Host: missingDomain}}},
		{"Just A Name", []Address{{Name: "Just A Name", Mailbox: missingMailbox, Host: missingDomain}}},
		{"<>", nil},
		{"Bob <bob>", []Address{{Name: "Bob", Mailbox: "bob", Host: missingDomain}}},
		{"J\xfcrgen <j@x>", []Address{{Name: "Jürgen", Mailbox: "j", Host: "x"}}},
		{`"unterminated <a@b>`, []Address{{Mailbox: "unterminated <a@b>", Host: missingDomain}}},
		{"a@[127.0.0.1], ,,", []Address{{Mailbox: "a", Host: "[127.0.0.1]"}}},
		{`"quoted local"@x`, []Address{{Mailbox: "quoted local", Host: "x"}}},
	}
	for _, tt := range tests {
		if d := cmp.Diff(tt.want, parseAddressList(tt.in)); d != "" {
			t.Errorf("parseAddressList(%q) (-want +got):\n%s", tt.in, d)
		}
	}
}

func TestParseDate(t *testing.T) {
	utc := func(y int, mo time.Month, d, h, mi, s int) time.Time {
		return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
	}
	tests := []struct {
		in   string
		want time.Time
	}{
		{"Mon, 2 Jan 2006 15:04:05 +0000", utc(2006, 1, 2, 15, 4, 5)},
		{"Mon, 2 Jan 2006 15:04:05 +0100 (CET)", utc(2006, 1, 2, 14, 4, 5)},
		{"2 Jan 2006 15:04 -0200", utc(2006, 1, 2, 17, 4, 0)},
		{"Monday, 02 Jan 2006 15:04:05 +0000 GMT", utc(2006, 1, 2, 15, 4, 5)},
		{"Mon, 2 Jan 06 15:04:05 +0000", utc(2006, 1, 2, 15, 4, 5)},
		{"Mon Jan  2 15:04:05 2006", utc(2006, 1, 2, 15, 4, 5)},
		{"2006-01-02T15:04:05Z", utc(2006, 1, 2, 15, 4, 5)},
		{"2006-01-02 15:04:05 +0000", utc(2006, 1, 2, 15, 4, 5)},
		{"mon, 2 jan 2006 15:04:05 +0000", utc(2006, 1, 2, 15, 4, 5)},
		{"Tue, 2 January 2006 15:04:05 -0000", utc(2006, 1, 2, 15, 4, 5)},
		{"", time.Time{}},
		{"yesterday", time.Time{}},
	}
	for _, tt := range tests {
		if got := parseDate(tt.in); !got.Equal(tt.want) {
			t.Errorf("parseDate(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseMediaType(t *testing.T) {
	tests := []struct {
		in       string
		typ, sub string
		params   []Param
		ok       bool
	}{
		{"Text/HTML; Charset=\"UTF-8\"", "text", "html", []Param{{"charset", "UTF-8"}}, true},
		{"text/plain charset=utf-8", "text", "plain", []Param{{"charset", "utf-8"}}, true},
		{`multipart/mixed; boundary="a\"b;c"; x=1`, "multipart", "mixed", []Param{{"boundary", `a"b;c`}, {"x", "1"}}, true},
		{"application/x; name=my file.pdf; flag; =bad", "application", "x", []Param{{"name", "my file.pdf"}}, true},
		{"application/x; title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A", "application", "x",
			[]Param{{"title", "This is ***fun***"}}, true},
		{"application/x; a=1; name=\"plain\"; name*0*=iso-8859-1''Gr%FC; name*1*=%DFe", "application", "x",
			[]Param{{"a", "1"}, {"name", "Grüße"}}, true},
		{"application/x; n=1; n=2", "application", "x", []Param{{"n", "1"}}, true},
		{"text", "", "", nil, false},
		{"te xt/plain", "", "", nil, false},
		{"", "", "", nil, false},
	}
	for _, tt := range tests {
		typ, sub, params, ok := parseMediaType(tt.in)
		if typ != tt.typ || sub != tt.sub || ok != tt.ok || !cmp.Equal(params, tt.params) {
			t.Errorf("parseMediaType(%q) = %q %q %v %v, want %q %q %v %v", tt.in, typ, sub, params, ok, tt.typ, tt.sub, tt.params, tt.ok)
		}
	}
}

func TestParseAddressListUnclosed(t *testing.T) {
	got := parseAddressList("Foo <a@b, Bar <c@d>; e@f")
	want := []Address{{Name: "Foo", Mailbox: "a", Host: "b"}, {Name: "Bar", Mailbox: "c", Host: "d"}, {Mailbox: "e", Host: "f"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	// Many "<" without ">" must not be quadratic.
	big := strings.Repeat("<", 200_000)
	start := time.Now()
	parseAddressList(big)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("%d unclosed angles took %v", len(big), d)
	}
}
