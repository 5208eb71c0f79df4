package web

import (
	"encoding/base64"
	"html"
	"io"
	"regexp"
	"strings"

	"github.com/microcosm-cc/bluemonday"

	"github.com/ternmail/tern/internal/msginfo"
)

// policies are the two sanitisers of message HTML. bluemonday's
// UGCPolicy keeps remote images, which tell a sender when and where a
// message was read; strict allows only images carried in the message
// (data: URIs, made from cid: parts), remote also http(s) images, used
// once the user asks for them. The iframe's own CSP enforces the same
// rule a second time.
type policies struct {
	strict, remote *bluemonday.Policy
}

// dataImage matches the data: URIs bluemonday's own data URI rule accepts.
var dataImage = regexp.MustCompile(`^data:image/(png|gif|jpeg|webp);base64,[A-Za-z0-9+/=]+$`)

func newPolicies() policies {
	return policies{strict: mailPolicy(false), remote: mailPolicy(true)}
}

func mailPolicy(remoteImages bool) *bluemonday.Policy {
	p := bluemonday.NewPolicy()
	p.AllowStandardAttributes()
	p.AllowStandardURLs()
	p.AllowAttrs("href").OnElements("a", "area")
	p.AllowURLSchemes("mailto", "http", "https")
	p.RequireNoFollowOnLinks(true)
	p.RequireNoReferrerOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	p.AllowElements("p", "br", "div", "span", "b", "i", "u", "em", "strong", "small", "big", "sub", "sup",
		"s", "strike", "del", "ins", "mark", "code", "pre", "kbd", "samp", "var", "blockquote", "q", "cite",
		"h1", "h2", "h3", "h4", "h5", "h6", "hr", "abbr", "address", "center", "font", "figure", "figcaption",
		"section", "article", "header", "footer", "main", "nav", "aside", "details", "summary")
	p.AllowAttrs("color", "face", "size").OnElements("font")
	p.AllowLists()
	p.AllowTables()
	p.AllowAttrs("align", "valign", "bgcolor", "width", "height", "border", "cellpadding", "cellspacing").
		OnElements("table", "tr", "td", "th", "tbody", "thead", "tfoot", "col", "colgroup", "div", "p", "img")
	p.AllowAttrs("alt", "title").OnElements("img")
	if remoteImages {
		p.AllowDataURIImages()
		p.AllowAttrs("src").OnElements("img")
	} else {
		p.AllowDataURIImages()
		p.AllowAttrs("src").Matching(dataImage).OnElements("img")
	}
	// Inline styles carry most mail layout. bluemonday checks each
	// property's value; the iframe's CSP stops any url() in them from
	// loading unless remote images are allowed.
	p.AllowStyles("color", "background-color", "font-size", "font-family", "font-weight", "font-style",
		"text-align", "text-decoration", "line-height", "margin", "margin-top", "margin-bottom", "margin-left",
		"margin-right", "padding", "padding-top", "padding-bottom", "padding-left", "padding-right",
		"border", "border-collapse", "border-color", "border-style", "border-width", "width", "height",
		"max-width", "min-width", "vertical-align", "white-space", "display", "text-transform",
		"letter-spacing", "list-style-type").Globally()
	return p
}

// remoteRef finds references that would load from the network: an img
// src or a CSS url() with an http(s) or protocol-relative URL. It only
// decides whether to offer "show remote images".
var remoteRef = regexp.MustCompile(`(?i)(<img[^>]+src\s*=\s*["']?\s*(https?:)?//)|(url\(\s*["']?\s*(https?:)?//)`)

// cidRef matches cid: image references.
var cidRef = regexp.MustCompile(`(?i)(["'\s=])cid:([^"'\s>]+)`)

// maxInlineImage bounds one cid: image turned into a data: URI.
const maxInlineImage = 2 << 20

// inlineCIDs replaces cid: references to image parts of the message with
// data: URIs, so images that travel with the message show without any
// request.
func inlineCIDs(doc string, root *msginfo.Part, blob io.ReaderAt) string {
	if !strings.Contains(strings.ToLower(doc), "cid:") {
		return doc
	}
	byID := map[string]*msginfo.Part{}
	var walk func(p *msginfo.Part)
	walk = func(p *msginfo.Part) {
		if p.ID != "" && p.Type == "image" {
			byID[strings.Trim(p.ID, "<> ")] = p
		}
		for i := range p.Children {
			walk(&p.Children[i])
		}
	}
	walk(root)
	return cidRef.ReplaceAllStringFunc(doc, func(m string) string {
		sub := cidRef.FindStringSubmatch(m)
		p := byID[sub[2]]
		if p == nil || !validImageSubtype(p.Subtype) {
			return m
		}
		b, err := io.ReadAll(io.LimitReader(partReader(blob, p), maxInlineImage+1))
		if err != nil || len(b) > maxInlineImage {
			return m
		}
		return sub[1] + "data:image/" + p.Subtype + ";base64," + base64.StdEncoding.EncodeToString(b)
	})
}

func validImageSubtype(s string) bool {
	switch s {
	case "png", "gif", "jpeg", "webp":
		return true
	}
	return false
}

// messageDocument builds the document shown in the sandboxed iframe:
// every display part in order, HTML sanitised, plain text escaped.
func (s *Server) messageDocument(parts []displayPart, texts []string, root *msginfo.Part, blob io.ReaderAt, remote bool) string {
	pol := s.policies.strict
	if remote {
		pol = s.policies.remote
	}
	var b strings.Builder
	b.WriteString("<!DOCTYPE html><html><head><meta charset=\"utf-8\">" +
		"<style>body{font-family:system-ui,sans-serif;margin:0.5rem;overflow-wrap:anywhere}" +
		"pre{white-space:pre-wrap}img{max-width:100%;height:auto}</style></head><body>")
	for i, p := range parts {
		if p.HTML {
			b.WriteString(pol.Sanitize(inlineCIDs(texts[i], root, blob)))
		} else {
			b.WriteString("<pre>" + html.EscapeString(texts[i]) + "</pre>")
		}
	}
	b.WriteString("</body></html>")
	return b.String()
}

// messageCSP is the policy of the iframe document: nothing runs, nothing
// loads but images carried inline, and remote images only when asked.
// sandbox applies even when the document is opened on its own.
func messageCSP(remote bool) string {
	img := "data:"
	if remote {
		img = "data: https: http:"
	}
	return "default-src 'none'; img-src " + img + "; style-src 'unsafe-inline'; " +
		"frame-ancestors 'self'; form-action 'none'; base-uri 'none'; sandbox allow-popups allow-popups-to-escape-sandbox"
}
