package smtpd

import (
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/ternmail/tern/internal/accounts"
)

// Replies. Texts are safe to show a client: no paths, SQL or config.
var (
	replyAuthRequired       = reply(530, 5, 7, 0, "Authentication required")
	replyRequireTLSNeedsTLS = reply(530, 5, 7, 10, "REQUIRETLS needs a TLS session (RFC 8689)")
	replyBadSequence        = reply(503, 5, 5, 1, "Bad sequence of commands")
	replyNestedMail         = reply(503, 5, 5, 1, "Nested MAIL command: finish or RSET the current transaction")
	replyRelayDenied        = reply(554, 5, 7, 1, "Relay access denied: we only accept mail for our own domains")
	replyUnknownUser        = reply(550, 5, 1, 1, "No such user here")
	replyBadRecipient       = reply(553, 5, 1, 3, "Invalid recipient address")
	replyRelayUnavailable   = reply(451, 4, 4, 0, "Cannot forward to remote recipients now, try again later")
	replyQuota              = reply(452, 4, 2, 2, "Mailbox full, try again later")
	replyTempFailure        = reply(451, 4, 3, 0, "Temporary local problem, try again later")
	replyShuttingDown       = reply(421, 4, 3, 2, "Service shutting down, try again later")
	replyTooManyErrors      = reply(421, 4, 7, 0, "Too many errors, closing connection")
	replyNeedUTF8           = reply(553, 5, 6, 7, "Non-ASCII address needs the SMTPUTF8 parameter (RFC 6531)")
	replyRouting            = reply(554, 5, 7, 1, "Relay access denied: %, ! and source-routed addresses are not accepted")
	replyQuotedAt           = reply(553, 5, 1, 3, "Invalid address: quoted local parts and a second @ are not accepted")
	replyAddressLiteral     = reply(553, 5, 1, 3, "Invalid address: address literals are not accepted")
	replyBadSender          = reply(553, 5, 1, 7, "Invalid sender address")
)

func reply(code, class, subject, detail int, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{class, subject, detail}, Message: msg}
}

// checkSender checks a MAIL FROM reverse-path ("" is the null sender).
func checkSender(from string, smtputf8 bool) *smtp.SMTPError {
	if from == "" {
		return nil
	}
	if r := checkCommon(from, smtputf8); r != nil {
		if r == replyNeedUTF8 {
			return r
		}
		return replyBadSender
	}
	if _, err := accounts.NormalizeAddress(from); err != nil {
		return replyBadSender
	}
	return nil
}

// checkRecipient refuses, before any lookup, the address forms that
// relays have been tricked with. go-smtp has already dropped a source
// route (<@a,@b:user@c>, RFC 5321 §4.1.1.3 and appendix C): what is left
// is the final mailbox, judged like any other, so a route through our
// domain to a foreign one is a relay attempt like a plain foreign address.
func checkRecipient(to string, smtputf8 bool) *smtp.SMTPError {
	if r := checkCommon(to, smtputf8); r != nil {
		return r
	}
	at := strings.LastIndexByte(to, '@')
	// %-hack and bang paths (RFC 5321 §3.6.1: "SHOULD NOT" be used):
	// some MTAs forward user%host@us to user@host.
	if strings.ContainsAny(to[:at], "%!:") {
		return replyRouting
	}
	return nil
}

func checkCommon(addr string, smtputf8 bool) *smtp.SMTPError {
	if !utf8.ValidString(addr) {
		return replyBadRecipient
	}
	if !smtputf8 {
		for i := 0; i < len(addr); i++ {
			if addr[i] >= utf8.RuneSelf {
				return replyNeedUTF8
			}
		}
	}
	// go-smtp removes the quotes of a quoted local part, so
	// "user@evil"@us arrives as user@evil@us.
	if strings.Count(addr, "@") != 1 {
		return replyQuotedAt
	}
	if strings.ContainsAny(addr, "\" \t\\<>()[],;\r\n") {
		if strings.Contains(addr, "@[") {
			return replyAddressLiteral
		}
		return replyQuotedAt
	}
	return nil
}
