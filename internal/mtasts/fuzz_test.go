package mtasts

import "testing"

func FuzzParse(f *testing.F) {
	f.Add("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n")
	f.Add("version: STSv1\nmode: none\nmax_age: 0\n")
	f.Add("version: STSv1\nmode: testing\nmx: *.\nmax_age: 99999999999999999999\n")
	f.Fuzz(func(t *testing.T, body string) {
		p, err := Parse(body)
		if err != nil {
			return
		}
		if p.MaxAge < 0 || p.MaxAge > maxMaxAge || p.Mode != Enforce && p.Mode != Testing && p.Mode != None {
			t.Fatalf("Parse(%q) = %+v", body, p)
		}
		for _, m := range p.MX {
			p.Matches(m)
		}
	})
}
