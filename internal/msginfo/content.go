package msginfo

import (
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// maxParams caps the parameters read from one field, so that a hostile
// header cannot make the RFC 2231 reassembly quadratic in its size.
const maxParams = 100

// setContent fills the MIME fields of pt from its header (RFC 2045, 2183,
// 3282, 2557, 1864).
func setContent(pt *Part, h header, inDigest bool) {
	ct := h.get("content-type")
	typ, sub, params, ok := parseMediaType(ct)
	switch {
	case ok:
		pt.Type, pt.Subtype, pt.Params = typ, sub, params
	case ct == "" && inDigest:
		pt.Type, pt.Subtype = "message", "rfc822" // RFC 2046 §5.1.5
	default:
		// Absent or unparsable: RFC 2045 §5.2's default.
		pt.Type, pt.Subtype = "text", "plain"
	}
	if pt.Type == "text" && param(pt.Params, "charset") == "" {
		pt.Params = append(pt.Params, Param{Name: "charset", Value: "us-ascii"})
	}

	pt.Encoding = "7BIT"
	if enc := firstToken(h.get("content-transfer-encoding")); enc != "" {
		pt.Encoding = strings.ToUpper(enc)
	}
	if d := h.get("content-disposition"); d != "" {
		v, rest, _ := strings.Cut(d, ";")
		pt.Disposition = strings.ToLower(strings.TrimSpace(v))
		pt.DispositionParams = parseParams(rest)
	}
	for _, l := range strings.Split(h.get("content-language"), ",") {
		if l = strings.TrimSpace(l); l != "" {
			pt.Language = append(pt.Language, l)
		}
	}
	pt.ID = h.get("content-id")
	pt.Description = h.get("content-description")
	pt.MD5 = h.get("content-md5")
	pt.Location = h.get("content-location")
}

// setTextPlain turns pt into the text/plain fallback for a part whose
// structure cannot be followed.
func setTextPlain(pt *Part) {
	pt.Type, pt.Subtype = "text", "plain"
	pt.Params = []Param{{Name: "charset", Value: "us-ascii"}}
	pt.Children, pt.Message, pt.Envelope = nil, nil, nil
}

func firstToken(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, " \t;("); i >= 0 {
		s = s[:i]
	}
	return s
}

// param returns the value of the named parameter, or "".
func param(ps []Param, name string) string {
	for _, p := range ps {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// parseMediaType parses a Content-Type value: lower-case type and subtype
// and the parameters in order. ok is false when there is no type/subtype.
func parseMediaType(s string) (typ, sub string, params []Param, ok bool) {
	mt, rest, _ := strings.Cut(s, ";")
	mt = strings.TrimSpace(mt)
	// "text/plain charset=utf-8": a missing semicolon.
	if i := strings.IndexAny(mt, " \t"); i >= 0 {
		rest = mt[i:] + ";" + rest
		mt = mt[:i]
	}
	t, st, found := strings.Cut(mt, "/")
	t, st = strings.ToLower(t), strings.ToLower(st)
	if !found || !isToken(t) || !isToken(st) {
		return "", "", nil, false
	}
	return t, st, parseParams(rest), true
}

// isToken reports whether s is an RFC 2045 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

type rawParam struct {
	name    string // lower case, without RFC 2231 section and "*"
	section int    // RFC 2231 section number, -1 for a plain parameter
	ext     bool   // RFC 2231 extended (charset'lang'%XX) value
	value   string
}

// parseParams parses "; name=value; name="quoted"" leniently: unquoted
// values may hold spaces, parameters without "=" are skipped. RFC 2231
// continuations and extended values are joined and decoded to UTF-8; the
// joined value replaces a plain parameter of the same name.
func parseParams(s string) []Param {
	var raw []rawParam
	i := 0
	for i < len(s) && len(raw) < maxParams {
		for i < len(s) && (s[i] == ';' || s[i] == ' ' || s[i] == '\t') {
			i++
		}
		j := i
		for j < len(s) && s[j] != '=' && s[j] != ';' {
			j++
		}
		name := strings.ToLower(strings.TrimSpace(s[i:j]))
		if j >= len(s) || s[j] == ';' {
			i = j
			continue
		}
		j++
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		var val string
		if j < len(s) && s[j] == '"' {
			val, j = readQuoted(s, j+1)
			for j < len(s) && s[j] != ';' {
				j++
			}
		} else {
			k := j
			for k < len(s) && s[k] != ';' {
				k++
			}
			val, j = strings.TrimSpace(s[j:k]), k
		}
		i = j
		if name != "" {
			raw = append(raw, splitParamName(name, val))
		}
	}
	return joinParams(raw)
}

func splitParamName(name, val string) rawParam {
	p := rawParam{name: name, section: -1, value: val}
	if strings.HasSuffix(p.name, "*") {
		p.name, p.ext = p.name[:len(p.name)-1], true
	}
	if k := strings.LastIndexByte(p.name, '*'); k > 0 {
		if n, err := strconv.Atoi(p.name[k+1:]); err == nil && n >= 0 && n < 1000 {
			p.name, p.section = p.name[:k], n
		}
	}
	if p.ext && p.section < 0 {
		p.section = 0
	}
	return p
}

// joinParams merges raw parameters by name, in order of first appearance.
func joinParams(raw []rawParam) []Param {
	var out []Param
	seen := make(map[string]bool, len(raw))
	for _, r := range raw {
		if seen[r.name] {
			continue
		}
		seen[r.name] = true
		var plain string
		var hasPlain bool
		var secs []rawParam
		for _, o := range raw {
			switch {
			case o.name != r.name:
			case o.section < 0 && !hasPlain:
				plain, hasPlain = o.value, true
			case o.section >= 0:
				secs = append(secs, o)
			}
		}
		if len(secs) == 0 {
			out = append(out, Param{Name: r.name, Value: plain})
			continue
		}
		out = append(out, Param{Name: r.name, Value: join2231(secs)})
	}
	return out
}

// join2231 joins RFC 2231 sections: the first extended section starts with
// charset'language', extended sections are %-encoded (RFC 2231 §3, §4).
func join2231(secs []rawParam) string {
	sort.SliceStable(secs, func(i, j int) bool { return secs[i].section < secs[j].section })
	var b []byte
	cs := ""
	for i, s := range secs {
		v := s.value
		if !s.ext {
			b = append(b, v...)
			continue
		}
		if i == 0 {
			if c, rest, ok := strings.Cut(v, "'"); ok {
				if _, rest2, ok := strings.Cut(rest, "'"); ok {
					cs, v = c, rest2
				}
			}
		}
		if u, err := url.PathUnescape(v); err == nil {
			v = u
		}
		b = append(b, v...)
	}
	return toUTF8(cs, b)
}

// readQuoted reads a quoted string starting after its opening quote and
// returns its unescaped content and the offset after the closing quote.
func readQuoted(s string, i int) (string, int) {
	var b strings.Builder
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), i + 1
		case c == '\\' && i+1 < len(s):
			i++
			c = s[i]
		}
		b.WriteByte(c)
		i++
	}
	return b.String(), i
}
