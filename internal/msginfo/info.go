// Package msginfo parses a message once, at delivery, into what IMAP asks
// for most: size, envelope, body structure with byte offsets, the date and a
// short preview. FETCH ENVELOPE, BODYSTRUCTURE and BODY[section] are then
// served from this record and ReadAt on the stored body, never by parsing
// the message again.
//
// The types are plain data and JSON-encodable: the store keeps one Info per
// message body as a JSON document.
package msginfo

import "time"

// Address is one mailbox of an address list as IMAP's ENVELOPE shows it
// (RFC 3501 §7.4.2). A group start has Host "" and Mailbox the group name;
// a group end has both empty. Name and Mailbox are decoded to UTF-8.
type Address struct {
	Name    string `json:"n,omitempty"`
	Mailbox string `json:"m,omitempty"`
	Host    string `json:"h,omitempty"`
}

// Envelope is the parsed RFC 5322 header summary of a message. Date,
// Subject, InReplyTo and MessageID keep the raw (unfolded) header text, as
// the IMAP ENVELOPE requires.
type Envelope struct {
	Date      string    `json:"date,omitempty"`
	Subject   string    `json:"subject,omitempty"`
	From      []Address `json:"from,omitempty"`
	Sender    []Address `json:"sender,omitempty"`
	ReplyTo   []Address `json:"replyTo,omitempty"`
	To        []Address `json:"to,omitempty"`
	Cc        []Address `json:"cc,omitempty"`
	Bcc       []Address `json:"bcc,omitempty"`
	InReplyTo string    `json:"inReplyTo,omitempty"`
	MessageID string    `json:"messageId,omitempty"`
}

// Param is one MIME parameter; order is kept as written.
type Param struct {
	Name  string `json:"k"`
	Value string `json:"v"`
}

// Part is one node of the MIME tree with the byte offsets of its header and
// body inside the whole message, so BODY[1.2.HEADER] or BODY[3]<0.100> is a
// ReadAt on the stored body.
type Part struct {
	Type        string  `json:"type"`    // lower case, e.g. "text"
	Subtype     string  `json:"subtype"` // lower case, e.g. "plain"
	Params      []Param `json:"params,omitempty"`
	ID          string  `json:"id,omitempty"`
	Description string  `json:"desc,omitempty"`
	Encoding    string  `json:"enc,omitempty"` // Content-Transfer-Encoding, upper case; "7BIT" when absent
	MD5         string  `json:"md5,omitempty"`

	Disposition       string   `json:"disp,omitempty"` // lower case
	DispositionParams []Param  `json:"dispParams,omitempty"`
	Language          []string `json:"lang,omitempty"`
	Location          string   `json:"loc,omitempty"`

	// Offsets in the whole message: the part's header starts at HeaderStart,
	// its body at BodyStart and ends at End (exclusive).
	HeaderStart int64 `json:"hs"`
	BodyStart   int64 `json:"bs"`
	End         int64 `json:"end"`
	Lines       int64 `json:"lines"` // body lines, for text/* and message/rfc822

	Children []Part `json:"children,omitempty"` // multipart/*

	// For message/rfc822 parts: the enclosed message.
	Envelope *Envelope `json:"envelope,omitempty"`
	Message  *Part     `json:"message,omitempty"`
}

// Size is the body size in octets, as BODYSTRUCTURE reports it.
func (p *Part) Size() int64 { return p.End - p.BodyStart }

// Info is what is kept of a message after its one parse.
type Info struct {
	Size     int64     `json:"size"`
	Envelope Envelope  `json:"envelope"`
	Body     Part      `json:"body"`
	Date     time.Time `json:"sentDate,omitempty"` // parsed Date header; zero when absent or unparsable
	Preview  string    `json:"preview,omitempty"`  // first text, whitespace collapsed, ≤ 256 characters
	// HeaderSize is the length of the top-level header including the blank
	// line that ends it.
	HeaderSize int64 `json:"headerSize"`
}
