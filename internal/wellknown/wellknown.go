// Package wellknown serves the small HTTP documents that let other
// servers and mail clients find their way to Tern on their own:
//
//   - the MTA-STS policy, /.well-known/mta-sts.txt (RFC 8461 §3.2), asked
//     for as https://mta-sts.DOMAIN/;
//   - Thunderbird autoconfig, /mail/config-v1.1.xml and
//     /.well-known/autoconfig/mail/config-v1.1.xml, asked for as
//     http(s)://autoconfig.DOMAIN/;
//   - Outlook autodiscover, POST /autodiscover/autodiscover.xml, asked
//     for as https://autodiscover.DOMAIN/;
//   - an Apple configuration profile, /apple.mobileconfig?emailaddress=.
//
// Handler is an http.Handler for the web door to mount.
package wellknown

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"strings"
	"text/template"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/dnsrecords"
	"github.com/ternmail/tern/internal/store"
)

// Config says what to advertise.
type Config struct {
	// Hostname is the server clients and peers connect to.
	Hostname string
	// Ports of the client doors as reachable from outside; zero means
	// the door is not offered (dnsrecords.StandardPorts in production).
	Ports dnsrecords.Ports
}

// Domains tells which domains are served here (store.Store).
type Domains interface {
	GetDomain(ctx context.Context, name string) (store.Domain, error)
}

// Handler serves the documents. Mount it for every path it answers,
// e.g. mux.Handle("/.well-known/", h), mux.Handle("/mail/", h),
// mux.Handle("/autodiscover/", h), mux.Handle("/Autodiscover/", h),
// mux.Handle("/apple.mobileconfig", h); or in front of everything with
// Handler.Match.
type Handler struct {
	cfg     Config
	domains Domains
}

// New returns a Handler.
func New(cfg Config, domains Domains) *Handler {
	return &Handler{cfg: cfg, domains: domains}
}

// Paths are the paths Handler answers.
var Paths = []string{
	"/.well-known/mta-sts.txt",
	"/mail/config-v1.1.xml",
	"/.well-known/autoconfig/mail/config-v1.1.xml",
	"/autodiscover/autodiscover.xml",
	"/Autodiscover/Autodiscover.xml",
	"/apple.mobileconfig",
}

// Match reports whether r is for Handler.
func Match(r *http.Request) bool {
	for _, p := range Paths {
		if r.URL.Path == p {
			return true
		}
	}
	return false
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/.well-known/mta-sts.txt":
		h.mtaSTS(w, r)
	case "/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml":
		h.autoconfig(w, r)
	case "/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml":
		h.autodiscover(w, r)
	case "/apple.mobileconfig":
		h.mobileconfig(w, r)
	default:
		http.NotFound(w, r)
	}
}

// mtaSTS serves the policy (RFC 8461 §3.3: text/plain, no redirects).
// The same policy holds for every domain: its one MX is this host.
func (h *Handler) mtaSTS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	host := requestHost(r)
	if dom, ok := strings.CutPrefix(host, "mta-sts."); ok && !h.served(r.Context(), dom) {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=3600")
	io.WriteString(w, dnsrecords.MTASTSPolicy(h.cfg.Hostname))
}

func requestHost(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

func (h *Handler) served(ctx context.Context, domain string) bool {
	if h.domains == nil {
		return true
	}
	d, err := accounts.NormalizeDomain(domain)
	if err != nil {
		return false
	}
	_, err = h.domains.GetDomain(ctx, d)
	return err == nil
}

// account is who a client asks about: the address (maybe empty) and its
// domain.
type account struct {
	Address, Domain string
}

// who finds the address in the query (emailaddress=, Thunderbird and
// ours) or the domain in the host name (autoconfig.DOMAIN).
func (h *Handler) who(r *http.Request, address string) (account, bool) {
	if address == "" {
		address = r.URL.Query().Get("emailaddress")
	}
	if address != "" {
		a, err := accounts.NormalizeAddress(address)
		if err != nil {
			return account{}, false
		}
		_, dom, _ := accounts.SplitAddress(a)
		return account{a, dom}, h.served(r.Context(), dom)
	}
	host := requestHost(r)
	for _, p := range []string{"autoconfig.", "autodiscover."} {
		if dom, ok := strings.CutPrefix(host, p); ok {
			return account{Domain: dom}, h.served(r.Context(), dom)
		}
	}
	return account{}, false
}

// server is one service entry of the documents.
type server struct {
	Type, Host string // Type: imap, pop3, smtp
	Port       int
	Socket     string // "SSL" (implicit TLS) or "STARTTLS"
}

// servers lists what clients should use, implicit TLS first (RFC 8314
// §3: preferred).
func (h *Handler) servers() []server {
	p, host := h.cfg.Ports, h.cfg.Hostname
	var out []server
	add := func(typ string, port int, socket string) {
		if port > 0 {
			out = append(out, server{typ, host, port, socket})
		}
	}
	add("imap", p.IMAPS, "SSL")
	add("imap", p.IMAP, "STARTTLS")
	add("pop3", p.POP3S, "SSL")
	add("pop3", p.POP3, "STARTTLS")
	add("smtp", p.Submissions, "SSL")
	add("smtp", p.Submission, "STARTTLS")
	return out
}

type docData struct {
	account
	Hostname string
	Servers  []server
}

func (h *Handler) render(w http.ResponseWriter, t *template.Template, ctype string, d docData) {
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Write(b.Bytes())
}

// funcs has x, which escapes text for XML.
var funcs = template.FuncMap{"x": func(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}}

// uuid is a name-based UUID (RFC 9562 §5.8, version 8 from SHA-256):
// the same address gets the same profile, so installing it again
// replaces it.
func uuid(name string) string {
	sum := sha256.Sum256([]byte("tern mobileconfig " + name))
	sum[6] = sum[6]&0x0f | 0x80
	sum[8] = sum[8]&0x3f | 0x80
	h := hex.EncodeToString(sum[:16])
	return strings.ToUpper(h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32])
}

// autoconfig serves Thunderbird's format (the "clientConfig" of
// https://wiki.mozilla.org/Thunderbird:Autoconfiguration).
func (h *Handler) autoconfig(w http.ResponseWriter, r *http.Request) {
	a, ok := h.who(r, "")
	if !ok {
		http.NotFound(w, r)
		return
	}
	h.render(w, autoconfigTmpl, "application/xml; charset=utf-8", docData{a, h.cfg.Hostname, h.servers()})
}

var autoconfigTmpl = template.Must(template.New("autoconfig").Funcs(funcs).Parse(`<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="{{x .Domain}}">
    <domain>{{x .Domain}}</domain>
    <displayName>{{x .Domain}} mail</displayName>
    <displayShortName>{{x .Domain}}</displayShortName>
{{- range .Servers}}{{if ne .Type "smtp"}}
    <incomingServer type="{{.Type}}">
      <hostname>{{x .Host}}</hostname>
      <port>{{.Port}}</port>
      <socketType>{{.Socket}}</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </incomingServer>{{end}}{{end}}
{{- range .Servers}}{{if eq .Type "smtp"}}
    <outgoingServer type="smtp">
      <hostname>{{x .Host}}</hostname>
      <port>{{.Port}}</port>
      <socketType>{{.Socket}}</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </outgoingServer>{{end}}{{end}}
  </emailProvider>
</clientConfig>
`))

// autodiscoverRequest is Outlook's POX request (MS-OXDSCLI §2.2.3).
type autodiscoverRequest struct {
	Request struct {
		EMailAddress string `xml:"EMailAddress"`
	} `xml:"Request"`
}

// autodiscover answers Outlook's POST with the IMAP and SMTP settings.
func (h *Handler) autodiscover(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an Autodiscover request", http.StatusMethodNotAllowed)
		return
	}
	var req autodiscoverRequest
	if err := xml.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.Request.EMailAddress == "" {
		http.Error(w, "bad Autodiscover request", http.StatusBadRequest)
		return
	}
	a, ok := h.who(r, req.Request.EMailAddress)
	if !ok {
		http.NotFound(w, r)
		return
	}
	h.render(w, autodiscoverTmpl, "application/xml; charset=utf-8", docData{a, h.cfg.Hostname, h.servers()})
}

var autodiscoverTmpl = template.Must(template.New("autodiscover").Funcs(funcs).Parse(`<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
    <Account>
      <AccountType>email</AccountType>
      <Action>settings</Action>
{{- range .Servers}}{{if ne .Type "pop3"}}
      <Protocol>
        <Type>{{if eq .Type "imap"}}IMAP{{else}}SMTP{{end}}</Type>
        <Server>{{x .Host}}</Server>
        <Port>{{.Port}}</Port>
        <LoginName>{{x $.Address}}</LoginName>
        <DomainRequired>off</DomainRequired>
        <SPA>off</SPA>
        <SSL>on</SSL>{{if eq .Socket "STARTTLS"}}
        <Encryption>TLS</Encryption>{{else}}
        <Encryption>SSL</Encryption>{{end}}
        <AuthRequired>on</AuthRequired>
      </Protocol>{{end}}{{end}}
    </Account>
  </Response>
</Autodiscover>
`))

// mobileconfig serves an unsigned Apple configuration profile with one
// mail account (IMAP in, SMTP out); the device asks for the password.
func (h *Handler) mobileconfig(w http.ResponseWriter, r *http.Request) {
	a, ok := h.who(r, "")
	if !ok || a.Address == "" {
		http.Error(w, "give emailaddress=ADDRESS of an account here", http.StatusNotFound)
		return
	}
	var in, out *server
	for _, s := range h.servers() {
		switch {
		case s.Type == "imap" && in == nil:
			in = &s
		case s.Type == "smtp" && out == nil:
			out = &s
		}
	}
	if in == nil || out == nil {
		http.Error(w, "no IMAP or submission service offered", http.StatusNotFound)
		return
	}
	var b bytes.Buffer
	err := mobileconfigTmpl.Execute(&b, struct {
		account
		In, Out *server
		UUID1   string
		UUID2   string
	}{a, in, out, uuid(a.Address + "/profile"), uuid(a.Address + "/mail")})
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-apple-aspen-config")
	w.Header().Set("Content-Disposition", `attachment; filename="`+a.Domain+`.mobileconfig"`)
	w.Write(b.Bytes())
}

var mobileconfigTmpl = template.Must(template.New("mobileconfig").Funcs(funcs).Parse(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
      <key>EmailAccountType</key><string>EmailTypeIMAP</string>
      <key>EmailAccountDescription</key><string>{{x .Address}}</string>
      <key>EmailAddress</key><string>{{x .Address}}</string>
      <key>IncomingMailServerHostName</key><string>{{x .In.Host}}</string>
      <key>IncomingMailServerPortNumber</key><integer>{{.In.Port}}</integer>
      <key>IncomingMailServerUseSSL</key><true/>
      <key>IncomingMailServerUsername</key><string>{{x .Address}}</string>
      <key>IncomingMailServerAuthentication</key><string>EmailAuthPassword</string>
      <key>OutgoingMailServerHostName</key><string>{{x .Out.Host}}</string>
      <key>OutgoingMailServerPortNumber</key><integer>{{.Out.Port}}</integer>
      <key>OutgoingMailServerUseSSL</key><true/>
      <key>OutgoingMailServerUsername</key><string>{{x .Address}}</string>
      <key>OutgoingMailServerAuthentication</key><string>EmailAuthPassword</string>
      <key>OutgoingPasswordSameAsIncomingPassword</key><true/>
      <key>PayloadType</key><string>com.apple.mail.managed</string>
      <key>PayloadIdentifier</key><string>tern.mail.{{x .Domain}}.{{.UUID2}}</string>
      <key>PayloadUUID</key><string>{{.UUID2}}</string>
      <key>PayloadVersion</key><integer>1</integer>
      <key>PayloadDisplayName</key><string>{{x .Address}}</string>
    </dict>
  </array>
  <key>PayloadDisplayName</key><string>{{x .Domain}} mail</string>
  <key>PayloadIdentifier</key><string>tern.profile.{{x .Domain}}.{{.UUID1}}</string>
  <key>PayloadType</key><string>Configuration</string>
  <key>PayloadUUID</key><string>{{.UUID1}}</string>
  <key>PayloadVersion</key><integer>1</integer>
</dict>
</plist>
`))
