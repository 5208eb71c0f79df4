package relay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/ternmail/tern/internal/mime7bit"
	"github.com/ternmail/tern/internal/store"
)

// outgoing is the queued message in the form each peer gets: as stored,
// or converted to 7-bit MIME (mime7bit). RFC 6152 §3 leaves a client
// whose peer lacks 8BITMIME the choice of converting or bouncing; Tern
// converts, as Postfix does. A body DATA cannot carry at all (NUL, bare
// CR or LF, lines over 998 octets: what BDAT BODY=BINARYMIME brought in,
// RFC 3030) is converted for every peer, since this client has no BDAT.
//
// Each form is made once per attempt, when a peer first needs it, and is
// signed as it will be sent: a DKIM signature of the stored body would
// not verify over the converted one.
type outgoing struct {
	blob   store.BlobReader
	class  mime7bit.Class
	signer Signer // nil: no signing
	log    *slog.Logger
	forms  map[formKind]*form
}

type formKind int

const (
	asStored   formKind = iota
	sevenBit            // converted; an 8-bit header field makes it fail
	sevenBitU8          // converted, for a peer with SMTPUTF8: 8-bit header fields go
)

// form is the message as one kind of peer gets it.
type form struct {
	conv   *mime7bit.Conversion // nil: as stored
	prefix []byte               // DKIM-Signature fields sent first
	size   int64                // octets sent, prefix included
	err    error                // the form could not be made
}

func newOutgoing(blob store.BlobReader, signer Signer, log *slog.Logger) (*outgoing, error) {
	class, err := mime7bit.Classify(io.NewSectionReader(blob, 0, blob.Size()))
	if err != nil {
		return nil, err
	}
	return &outgoing{blob: blob, class: class, signer: signer, log: log, forms: map[formKind]*form{}}, nil
}

// formFor returns the form the peer c at host gets.
func (o *outgoing) formFor(c *client, host string) *form {
	k := asStored
	switch {
	case o.class == mime7bit.Binary:
		o.log.Info("converting to 7-bit MIME", "host", host, "why", "binary body, which DATA cannot carry")
		k = sevenBit
	case o.class == mime7bit.EightBit && !c.has("8BITMIME"):
		o.log.Info("converting to 7-bit MIME", "host", host, "why", "8-bit body and no 8BITMIME")
		k = sevenBit
	}
	if k == sevenBit && c.has("SMTPUTF8") {
		k = sevenBitU8
	}
	f, ok := o.forms[k]
	if !ok {
		f = o.make(k, host)
		o.forms[k] = f
	}
	return f
}

// make converts (unless k is asStored), signs and measures.
func (o *outgoing) make(k formKind, host string) *form {
	f := &form{}
	if k != asStored {
		conv, err := mime7bit.Prepare(o.blob, o.blob.Size(), mime7bit.Options{UTF8Header: k == sevenBitU8})
		switch {
		case errors.Is(err, mime7bit.ErrUnconvertible):
			// RFC 3463 5.6.3: conversion required but not supported.
			f.err = &permError{"5.6.3", fmt.Sprintf("%s needs the message in 7 bit, which it cannot be made: %v", host, err)}
			return f
		case err != nil:
			f.err = &tempError{"4.3.0", "reading the queued message: " + err.Error()}
			return f
		}
		f.conv = conv
	}
	var err error
	f.prefix, f.size, err = o.signAndMeasure(f.conv)
	if err != nil {
		o.log.Error("preparing the message", "err", err)
		f.err = &tempError{"4.3.0", err.Error()}
	}
	return f
}

// signAndMeasure returns the DKIM signatures of the form and the octets
// it takes, signatures included. A converted form is made for it and
// thrown away as it is read, so no copy of it is ever held.
func (o *outgoing) signAndMeasure(conv *mime7bit.Conversion) ([]byte, int64, error) {
	switch {
	case conv == nil && o.signer == nil:
		return nil, o.blob.Size(), nil
	case conv == nil:
		sigs, err := o.signer.SignReader(io.NewSectionReader(o.blob, 0, o.blob.Size()))
		if err != nil {
			return nil, 0, fmt.Errorf("DKIM signing failed: %w", err)
		}
		return sigs, o.blob.Size() + int64(len(sigs)), nil
	case o.signer == nil:
		n, err := conv.WriteTo(io.Discard)
		if err != nil {
			return nil, 0, fmt.Errorf("converting the message: %w", err)
		}
		return nil, n, nil
	}
	body := stream(conv)
	defer body.Close()
	sigs, err := o.signer.SignReader(body)
	// The signer stops at the header when it has no key for the domain.
	if _, cerr := io.Copy(io.Discard, body); cerr != nil {
		return nil, 0, fmt.Errorf("converting the message: %w", cerr)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("DKIM signing failed: %w", err)
	}
	return sigs, body.n + int64(len(sigs)), nil
}

// open returns the form's octets as sent.
func (f *form) open(blob store.BlobReader) io.ReadCloser {
	if f.conv == nil {
		return io.NopCloser(io.MultiReader(bytes.NewReader(f.prefix), io.NewSectionReader(blob, 0, blob.Size())))
	}
	s := stream(f.conv)
	s.prefix = bytes.NewReader(f.prefix)
	return s
}

// converted is the output of a conversion as a reader, made as it is
// read.
type converted struct {
	prefix *bytes.Reader // read first, when set
	pr     *io.PipeReader
	done   chan struct{}
	n      int64 // octets the conversion wrote, once done
}

var errAbandoned = errors.New("conversion abandoned")

func stream(conv *mime7bit.Conversion) *converted {
	pr, pw := io.Pipe()
	s := &converted{pr: pr, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		n, err := conv.WriteTo(pw)
		s.n = n
		pw.CloseWithError(err)
	}()
	return s
}

func (s *converted) Read(p []byte) (int, error) {
	if s.prefix != nil && s.prefix.Len() > 0 {
		return s.prefix.Read(p)
	}
	n, err := s.pr.Read(p)
	if err == io.EOF {
		<-s.done // so n is final
	}
	return n, err
}

// Close stops the conversion, if still running, and waits for it.
func (s *converted) Close() error {
	s.pr.CloseWithError(errAbandoned)
	<-s.done
	return nil
}
