package pop3d

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

const (
	// maxCommandLen is RFC 2449 §4's limit on a command line, CRLF
	// included.
	maxCommandLen = 255
	// maxSASLLineLen bounds one client response of an AUTH exchange. RFC
	// 5034 §4 sets no limit of its own; PLAIN with long names and
	// passwords may pass 255 octets, so allow more.
	maxSASLLineLen = 2048
	// maxBadCommands is how many unknown, malformed or out-of-state
	// commands a session may send before it is closed.
	maxBadCommands = 10
	// maxAuthFailures is how many failed logins a session may try before
	// it is closed; the Authenticator throttles across sessions.
	maxAuthFailures = 3
	// handshakeTimeout bounds a TLS handshake (STLS or port 995).
	handshakeTimeout = 30 * time.Second

	// Buffer sizes: small for the idle session, large (pooled) only while
	// streaming a message.
	readBufSize   = 512
	writeBufSize  = 512
	streamBufSize = 32 << 10
)

// levelTrace logs protocol transcripts (credentials redacted).
const levelTrace = slog.LevelDebug - 4

var (
	errLineTooLong = errors.New("line too long")
	errInterrupted = errors.New("server shutting down")
)

type state int

const (
	stateAuthorization state = iota // RFC 1939 §4
	stateTransaction                // RFC 1939 §5
)

// session is one client connection.
type session struct {
	s      *Server
	raw    net.Conn // the TCP connection; deadlines and forced close go here
	conn   net.Conn // raw, or the TLS connection over it
	br     *bufio.Reader
	bw     *bufio.Writer
	log    *slog.Logger
	remote netip.Addr
	isTLS  bool
	ctx    context.Context

	state    state
	user     string // argument of a USER awaiting its PASS
	bad      int    // bad commands so far
	authFail int    // failed logins so far
	drop     *maildrop

	mu          sync.Mutex // guards interrupted against Shutdown
	interrupted bool
}

func newSession(s *Server, c net.Conn, remote netip.Addr) *session {
	id := s.nextID.Add(1)
	return &session{
		s:      s,
		raw:    c,
		conn:   c,
		br:     bufio.NewReaderSize(c, readBufSize),
		bw:     bufio.NewWriterSize(c, writeBufSize),
		log:    s.log.With("conn", id, "remote", remote),
		remote: remote,
		ctx:    s.ctx,
	}
}

// interrupt makes the session stop at its next command boundary.
func (ss *session) interrupt() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.interrupted = true
	ss.raw.SetReadDeadline(time.Now())
}

// armRead sets the read deadline for the next read (RFC 1939 §3
// autologout), unless Shutdown has begun.
func (ss *session) armRead() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.interrupted {
		return false
	}
	ss.raw.SetReadDeadline(time.Now().Add(ss.s.cfg.IdleTimeout))
	return true
}

func (ss *session) run(implicitTLS bool) {
	defer func() {
		if r := recover(); r != nil {
			ss.log.Error("pop3 session panic", "panic", r, "stack", string(debug.Stack()))
		}
		ss.closeMaildrop()
		ss.raw.Close()
	}()
	ss.log.Debug("pop3 connection", "implicit_tls", implicitTLS)
	if implicitTLS {
		if err := ss.startTLS(); err != nil {
			ss.log.Debug("pop3 TLS handshake failed", "err", err)
			return
		}
	}
	ss.ok("%s POP3 server ready", ss.s.cfg.Hostname) // RFC 1939 §4 greeting
	for {
		line, err := ss.readLine(maxCommandLen)
		switch {
		case errors.Is(err, errLineTooLong):
			if ss.badCommand("command line too long (RFC 2449: 255 octets)") {
				return
			}
			continue
		case errors.Is(err, errInterrupted):
			ss.err("[SYS/TEMP] server shutting down")
			ss.flush()
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			if ss.isInterrupted() {
				ss.err("[SYS/TEMP] server shutting down")
			} else {
				ss.err("autologout: idle for too long")
			}
			ss.flush()
			ss.log.Debug("pop3 session ended", "reason", "timeout or shutdown")
			return
		case err != nil:
			if !errors.Is(err, io.EOF) {
				ss.log.Debug("pop3 read", "err", err)
			}
			return
		}
		if ss.dispatch(line) {
			ss.flush()
			return
		}
	}
}

func (ss *session) isInterrupted() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.interrupted
}

// dispatch runs one command line and reports whether the session is over.
func (ss *session) dispatch(line string) (quit bool) {
	cmd, arg, _ := strings.Cut(line, " ")
	cmd = strings.ToUpper(cmd)
	if ss.s.log.Enabled(ss.ctx, levelTrace) {
		logged := line
		if cmd == "PASS" || cmd == "AUTH" && strings.Contains(arg, " ") {
			logged = cmd + " <redacted>"
		}
		ss.log.Log(ss.ctx, levelTrace, "pop3 command", "line", logged)
	}
	switch cmd {
	case "CAPA":
		return ss.cmdCapa(arg)
	case "QUIT":
		return ss.cmdQuit(arg)
	}
	if ss.state == stateAuthorization {
		return ss.dispatchAuthorization(cmd, arg)
	}
	return ss.dispatchTransaction(cmd, arg)
}

// readLine reads one line of at most max octets with its line ending
// (CRLF, or a bare LF from lenient clients) and returns it without the
// ending. A longer line is read to its end, discarded, and reported as
// errLineTooLong.
func (ss *session) readLine(max int) (string, error) {
	// Replies to pipelined commands (RFC 2449 §6.6) are sent together,
	// once no complete command is waiting.
	if buf, _ := ss.br.Peek(ss.br.Buffered()); bytes.IndexByte(buf, '\n') < 0 {
		if err := ss.flush(); err != nil {
			return "", err
		}
	}
	if !ss.armRead() {
		return "", errInterrupted
	}
	var long []byte
	total := 0
	for {
		chunk, err := ss.br.ReadSlice('\n')
		total += len(chunk)
		if err == nil && long == nil && total <= max {
			return string(trimEOL(chunk)), nil
		}
		if total <= max {
			long = append(long, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return "", err
		}
		if total > max {
			return "", errLineTooLong
		}
		return string(trimEOL(long)), nil
	}
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// badCommand answers a bad command and reports whether the session has
// used up its budget and must close.
func (ss *session) badCommand(msg string) (quit bool) {
	ss.bad++
	if ss.bad >= maxBadCommands {
		ss.err("%s; too many bad commands, closing", msg)
		ss.log.Info("pop3 session closed: too many bad commands")
		return true
	}
	ss.err("%s", msg)
	return false
}

func (ss *session) ok(format string, args ...any) {
	ss.bw.WriteString("+OK")
	if format != "" {
		ss.bw.WriteByte(' ')
		fmt.Fprintf(ss.bw, format, args...)
	}
	ss.bw.WriteString("\r\n")
}

func (ss *session) err(format string, args ...any) {
	ss.bw.WriteString("-ERR ")
	fmt.Fprintf(ss.bw, format, args...)
	ss.bw.WriteString("\r\n")
}

// line writes one line of a multi-line reply; the caller has made sure it
// does not start with ".".
func (ss *session) line(s string) {
	ss.bw.WriteString(s)
	ss.bw.WriteString("\r\n")
}

func (ss *session) flush() error {
	if ss.bw.Buffered() == 0 {
		return nil
	}
	ss.raw.SetWriteDeadline(time.Now().Add(ss.s.cfg.IdleTimeout))
	return ss.bw.Flush()
}

// startTLS runs the server side of a TLS handshake over the connection and
// switches the session to it. Input buffered before it is discarded (RFC
// 2595 §4 and the command injection it warns of).
func (ss *session) startTLS() error {
	tc := tls.Server(ss.raw, ss.s.cfg.TLS)
	ctx, cancel := context.WithTimeout(ss.ctx, handshakeTimeout)
	defer cancel()
	ss.raw.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	ss.raw.SetDeadline(time.Time{})
	ss.conn = tc
	ss.isTLS = true
	ss.br.Reset(tc)
	ss.bw.Reset(tc)
	st := tc.ConnectionState()
	ss.log = ss.log.With("tls", tls.VersionName(st.Version))
	return nil
}
