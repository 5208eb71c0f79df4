package imapd

import (
	"bufio"
	"compress/flate"
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

	"github.com/ternmail/tern/internal/store"
)

type state int

const (
	stateNotAuth state = iota
	stateAuth
	stateSelected
)

// conn is one IMAP session. nc is the raw connection (deadlines, Close);
// reads and writes go through br and bw, over TLS or COMPRESS when on. Only its own goroutine touches it, except
// interruptIfIdle (Shutdown) and the IDLE reader goroutine, which only
// reads.
type conn struct {
	srv *Server
	nc  net.Conn
	ip  netip.Addr
	log *slog.Logger
	ctx context.Context

	stream io.ReadWriter // nc or its TLS layer, under br and bw
	br     *bufio.Reader
	bw     *bufio.Writer // nil between responses unless compressing: see out
	wdst   io.Writer     // what bw writes to
	zw     *flate.Writer // COMPRESS=DEFLATE: flushed after bw
	tls    bool

	state state
	acct  store.Account
	// Extensions the client turned on with ENABLE (RFC 5161).
	utf8, rev2, condstore, qresync bool

	sel          *selected
	notify       <-chan struct{}
	cancelNotify func()
	dirty        bool // a store change signal awaits ChangesSince

	cmd      string   // the running command's name, e.g. "UID FETCH"
	fetchErr error    // a FETCH item failed softly (BINARY's UNKNOWN-CTE)
	saved    []uint32 // SEARCHRES "$" result, as UIDs (RFC 5182)
	bad      int

	idleMu sync.Mutex
	idle   bool // blocked waiting for a command

	// Read side, touched only by the goroutine reading (deadlineReader).
	inLine    bool // readLine is reading a command line
	lineArmed bool // its deadline is set
}

func newConn(s *Server, nc net.Conn, ip netip.Addr) *conn {
	id := s.nextID.Add(1)
	c := &conn{
		srv: s,
		nc:  nc,
		ip:  ip,
		log: s.log.With("conn", id, "remote", nc.RemoteAddr().String()),
		ctx: context.Background(),
	}
	c.setStreams(nc)
	return c
}

// Buffer sizes: most of what an idle session holds is its read buffer,
// so it is small. Longer command lines are read in fragments (readLine)
// and large literals bypass the writer's buffer.
const (
	readBufSize  = 4 << 10
	writeBufSize = 8 << 10
)

// writers lends write buffers for the time of one response: a session
// spends most of its life waiting for a command or in IDLE, and need not
// hold a buffer meanwhile.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufSize) }}

// setStreams (re)builds the buffered reader and the writer's destination
// over rw, after STARTTLS.
func (c *conn) setStreams(rw io.ReadWriter) {
	c.stream = rw
	c.br = bufio.NewReaderSize(&deadlineReader{c: c, r: rw}, readBufSize)
	c.release()
	c.wdst = &deadlineWriter{nc: c.nc, w: rw}
}

// out is the buffered writer for the response being written, borrowed
// from writers until the next flush. Only the session's goroutine writes.
func (c *conn) out() *bufio.Writer {
	if c.bw == nil {
		c.bw = writers.Get().(*bufio.Writer)
		c.bw.Reset(c.wdst)
	}
	return c.bw
}

// release returns an empty borrowed writer. A compressing session keeps
// its own: the deflate stream behind it is the session's.
func (c *conn) release() {
	if c.bw == nil || c.zw != nil || c.bw.Buffered() > 0 {
		return
	}
	c.bw.Reset(nil)
	writers.Put(c.bw)
	c.bw = nil
}

// deadlineReader sets the read deadline: autologout (RFC 3501 §5.4)
// applies to every wait for the client. Within a command line it is set
// once, at the line's first read, so a client dribbling a line byte by
// byte (slowloris) is cut off; elsewhere (literal data) before every
// read, so a large APPEND over a slow link is not.
type deadlineReader struct {
	c *conn
	r io.Reader
}

var errShutdown = errors.New("server shutting down")

func (d *deadlineReader) Read(b []byte) (int, error) {
	if !d.c.lineArmed {
		d.c.nc.SetReadDeadline(time.Now().Add(d.c.srv.cfg.IdleTimeout))
		d.c.lineArmed = d.c.inLine
	}
	if d.c.interrupted() {
		return 0, errShutdown
	}
	return d.r.Read(b)
}

type deadlineWriter struct {
	nc net.Conn
	w  io.Writer
}

func (d *deadlineWriter) Write(b []byte) (int, error) {
	d.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	return d.w.Write(b)
}

func (c *conn) setIdle(on bool) {
	c.idleMu.Lock()
	c.idle = on
	c.idleMu.Unlock()
}

func (c *conn) interrupted() bool {
	c.idleMu.Lock()
	defer c.idleMu.Unlock()
	return c.idle && c.srv.shutting.Load()
}

// interruptIfIdle wakes a session blocked reading its next command so it
// says BYE; a busy one notices Shutdown after its command.
func (c *conn) interruptIfIdle() {
	c.idleMu.Lock()
	defer c.idleMu.Unlock()
	if c.idle {
		c.nc.SetReadDeadline(time.Now())
	}
}

func (c *conn) serve(implicitTLS bool) {
	defer c.nc.Close()
	defer func() {
		if c.cancelNotify != nil {
			c.cancelNotify()
		}
	}()
	defer func() {
		// The connection boundary: one session's bug must not take the
		// server down.
		if v := recover(); v != nil {
			c.log.Error("panic in session", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	if implicitTLS {
		if err := c.handshake(); err != nil {
			c.log.Debug("tls handshake failed", "err", err)
			return
		}
	}
	c.log.Debug("connected", "tls", c.tls)
	c.writeLine("* OK [CAPABILITY " + c.capabilities() + "] " + c.srv.cfg.Hostname + " Tern IMAP ready")
	if c.flush() != nil {
		return
	}
	for {
		if c.srv.shutting.Load() {
			c.bye("Server shutting down")
			return
		}
		c.setIdle(true)
		line, err := c.readLine()
		c.setIdle(false)
		if err != nil {
			c.readFailed(err)
			return
		}
		if !c.command(line) {
			return
		}
	}
}

// readFailed says goodbye as well as the failure allows.
func (c *conn) readFailed(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, errLineTooLong):
		c.writeLine("* BAD Command line too long")
		c.bye("Closing")
	case c.srv.shutting.Load():
		c.bye("Server shutting down")
	case errors.As(err, &ne) && ne.Timeout():
		c.bye("Autologout")
	default:
		c.log.Debug("read failed", "err", err)
	}
}

func (c *conn) bye(text string) {
	c.writeLine("* BYE " + text)
	c.flush()
}

var errLineTooLong = errors.New("line too long")

// readLine reads one line without its CRLF, at most MaxLineBytes, within
// one IdleTimeout.
func (c *conn) readLine() ([]byte, error) {
	c.inLine, c.lineArmed = true, false
	defer func() { c.inLine, c.lineArmed = false, false }()
	var line []byte
	for {
		frag, err := c.br.ReadSlice('\n')
		if len(line)+len(frag) > c.srv.cfg.MaxLineBytes+2 {
			return nil, errLineTooLong
		}
		line = append(line, frag...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// continueLiteral asks for a synchronising literal (RFC 3501 §7.5).
func (c *conn) continueLiteral(sync bool) error {
	if !sync {
		return nil
	}
	c.writeLine("+ Ready for literal data")
	return c.flush()
}

func (c *conn) writeLine(s string) {
	w := c.out()
	w.WriteString(s)
	w.WriteString("\r\n")
}

func (c *conn) writef(format string, args ...any) {
	w := c.out()
	fmt.Fprintf(w, format, args...)
	w.WriteString("\r\n")
}

func (c *conn) flush() error {
	if c.bw == nil {
		return nil
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	if c.zw != nil {
		return c.zw.Flush() // sync flush: the client can decode all of it
	}
	c.release()
	return nil
}

// command is one entry of the dispatch table.
type command struct {
	states []state
	fn     func(c *conn, tag string, p *parser) error
}

var (
	anyState = []state{stateNotAuth, stateAuth, stateSelected}
	notAuth  = []state{stateNotAuth}
	authed   = []state{stateAuth, stateSelected}
	selState = []state{stateSelected}
)

var commands map[string]command

func init() {
	commands = map[string]command{
		"CAPABILITY":   {states: anyState, fn: (*conn).cmdCapability},
		"NOOP":         {states: anyState, fn: (*conn).cmdNoop},
		"LOGOUT":       {states: anyState, fn: (*conn).cmdLogout},
		"ID":           {states: anyState, fn: (*conn).cmdID},
		"STARTTLS":     {states: notAuth, fn: (*conn).cmdStartTLS},
		"LOGIN":        {states: notAuth, fn: (*conn).cmdLogin},
		"AUTHENTICATE": {states: notAuth, fn: (*conn).cmdAuthenticate},
		"ENABLE":       {states: authed, fn: (*conn).cmdEnable},
		"NAMESPACE":    {states: authed, fn: (*conn).cmdNamespace},
		"SELECT":       {states: authed, fn: (*conn).cmdSelect},
		"EXAMINE":      {states: authed, fn: (*conn).cmdSelect},
		"CREATE":       {states: authed, fn: (*conn).cmdCreate},
		"DELETE":       {states: authed, fn: (*conn).cmdDelete},
		"RENAME":       {states: authed, fn: (*conn).cmdRename},
		"SUBSCRIBE":    {states: authed, fn: (*conn).cmdSubscribe},
		"UNSUBSCRIBE":  {states: authed, fn: (*conn).cmdSubscribe},
		"LIST":         {states: authed, fn: (*conn).cmdList},
		"LSUB":         {states: authed, fn: (*conn).cmdLsub},
		"STATUS":       {states: authed, fn: (*conn).cmdStatus},
		"APPEND":       {states: authed, fn: (*conn).cmdAppend},
		"IDLE":         {states: authed, fn: (*conn).cmdIdle},
		"GETQUOTAROOT": {states: authed, fn: (*conn).cmdGetQuotaRoot},
		"GETQUOTA":     {states: authed, fn: (*conn).cmdGetQuota},
		"SETQUOTA":     {states: authed, fn: (*conn).cmdSetQuota},
		"COMPRESS":     {states: authed, fn: (*conn).cmdCompress},
		"CHECK":        {states: selState, fn: (*conn).cmdNoop},
		"CLOSE":        {states: selState, fn: (*conn).cmdClose},
		"UNSELECT":     {states: selState, fn: (*conn).cmdClose},
		"EXPUNGE":      {states: selState, fn: (*conn).cmdExpunge},
		"UID EXPUNGE":  {states: selState, fn: (*conn).cmdExpunge},
		"SEARCH":       {states: selState, fn: (*conn).cmdSearch},
		"UID SEARCH":   {states: selState, fn: (*conn).cmdSearch},
		"FETCH":        {states: selState, fn: (*conn).cmdFetch},
		"UID FETCH":    {states: selState, fn: (*conn).cmdFetch},
		"STORE":        {states: selState, fn: (*conn).cmdStore},
		"UID STORE":    {states: selState, fn: (*conn).cmdStore},
		"SORT":         {states: selState, fn: (*conn).cmdSort},
		"UID SORT":     {states: selState, fn: (*conn).cmdSort},
		"THREAD":       {states: selState, fn: (*conn).cmdThread},
		"UID THREAD":   {states: selState, fn: (*conn).cmdThread},
		"COPY":         {states: selState, fn: (*conn).cmdCopy},
		"UID COPY":     {states: selState, fn: (*conn).cmdCopy},
		"MOVE":         {states: selState, fn: (*conn).cmdCopy},
		"UID MOVE":     {states: selState, fn: (*conn).cmdCopy},
	}
}

// levelTrace logs protocol transcripts (client lines, credentials
// redacted); below Debug so it is off unless asked for.
const levelTrace = slog.LevelDebug - 4

// traceLine logs a client line at levelTrace with LOGIN and AUTHENTICATE
// arguments redacted.
func (c *conn) traceLine(line []byte) {
	if !c.log.Enabled(c.ctx, levelTrace) {
		return
	}
	s := string(line)
	f := strings.Fields(s)
	if len(f) >= 2 && (strings.EqualFold(f[1], "LOGIN") || strings.EqualFold(f[1], "AUTHENTICATE")) {
		s = f[0] + " " + f[1] + " <redacted>"
	}
	c.log.Log(c.ctx, levelTrace, "C: "+s)
}

// command runs one command line and reports whether the session goes on.
func (c *conn) command(line []byte) bool {
	c.traceLine(line)
	p := newParser(c, line)
	tag, err := p.tag()
	if err == nil {
		err = p.sp()
	}
	if err != nil {
		c.writeLine("* BAD Invalid tag")
		return c.countBad() && c.flush() == nil
	}
	name, err := p.atom()
	if err == nil {
		name = strings.ToUpper(name)
		if name == "UID" {
			var sub string
			if err = p.sp(); err == nil {
				sub, err = p.atom()
			}
			name += " " + strings.ToUpper(sub)
		}
	}
	cmd, known := commands[name]
	switch {
	case err != nil:
		err = badf("Missing command")
	case !known:
		err = badf("Unknown command")
	case !allowed(cmd.states, c.state):
		err = badf("%s not allowed now", name)
	default:
		if name != "NOOP" && name != "IDLE" {
			c.log.Debug("command", "cmd", name)
		}
		c.cmd = name
		err = cmd.fn(c, tag, p)
		if err == nil {
			// Handlers that succeed write their own tagged OK.
			return name != "LOGOUT" && c.flush() == nil
		}
	}
	return c.fail(tag, p, err)
}

func allowed(states []state, s state) bool {
	for _, x := range states {
		if x == s {
			return true
		}
	}
	return false
}

func (c *conn) countBad() bool {
	c.bad++
	if c.bad >= maxBadCommands {
		c.bye("Too many bad commands")
		return false
	}
	return true
}

// fail writes the tagged reply for a failed command.
func (c *conn) fail(tag string, p *parser, err error) bool {
	if err == errStop {
		return false
	}
	var pe *protoErr
	if !errors.As(err, &pe) {
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
			errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, errLineTooLong) ||
			errors.Is(err, errShutdown) {
			c.readFailed(err)
			return false
		}
		pe = storeError(c, err)
	}
	// Non-synchronising literals of the failed command are on their way:
	// consume them so they are not taken for commands.
	if !pe.fatal && p.skipRest() != nil {
		pe.fatal = true
	}
	status := "NO"
	if pe.bad {
		status = "BAD"
	}
	c.writeLine(c.response(tag, status, pe.code, pe.msg))
	if pe.fatal {
		c.bye("Closing")
		return false
	}
	if pe.bad && !c.countBad() {
		return false
	}
	return c.flush() == nil
}

// errStop ends the session after a handler already said goodbye.
var errStop = errors.New("stop")

func (c *conn) response(tag, status, code, text string) string {
	if code != "" {
		return tag + " " + status + " [" + code + "] " + text
	}
	return tag + " " + status + " " + text
}

// ok sends pending mailbox updates, then the tagged OK.
func (c *conn) ok(tag, code, text string) error {
	return c.okUpdates(tag, code, text, true)
}

func (c *conn) okUpdates(tag, code, text string, allowExpunge bool) error {
	if c.state == stateSelected {
		if err := c.sync(allowExpunge, false); err != nil {
			return err
		}
	}
	c.writeLine(c.response(tag, "OK", code, text))
	return nil
}

// storeError maps a store error to a client-safe NO (RFC 5530 codes).
func storeError(c *conn, err error) *protoErr {
	switch {
	case errors.Is(err, store.ErrNoSuchMailbox), errors.Is(err, store.ErrNotFound):
		return nof("NONEXISTENT", "No such mailbox")
	case errors.Is(err, store.ErrExists):
		return nof("ALREADYEXISTS", "Mailbox already exists")
	case errors.Is(err, store.ErrQuota):
		return nof("OVERQUOTA", "Quota exceeded")
	case errors.Is(err, store.ErrTooBig):
		return nof("TOOBIG", "Message too big")
	case errors.Is(err, store.ErrInvalid):
		return nof("CANNOT", "Operation not permitted")
	case errors.Is(err, store.ErrInUse):
		return nof("INUSE", "Mailbox in use, try again later")
	case errors.Is(err, store.ErrFull):
		// RFC 5530 §3: UNAVAILABLE is a temporary failure.
		c.log.Error("command failed: storage full", "err", err)
		return nof("UNAVAILABLE", "Server storage full, try again later")
	}
	c.log.Error("command failed", "err", err)
	return nof("SERVERBUG", "Internal error")
}

func (c *conn) handshake() error {
	tc := tls.Server(c.nc, c.srv.cfg.TLS)
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	c.tls = true
	c.setStreams(tc)
	return nil
}
