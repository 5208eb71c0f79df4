package testenv

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// Logger returns a logger writing each record through t.Log, which shows
// it only for a failed test or under -v, and failing the test on a
// record about a panic (the doors log a recovered session panic). It
// writes records from the debug level up, and every record under -v.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(&tbHandler{t: t})
}

type tbHandler struct {
	t     testing.TB
	attrs []slog.Attr
}

func (h *tbHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= slog.LevelDebug || testing.Verbose()
}

func (h *tbHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	for _, a := range h.attrs {
		b.WriteString(" " + a.String())
	}
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	if strings.Contains(r.Message, "panic") {
		h.t.Error(b.String())
	} else {
		h.t.Log(b.String())
	}
	return nil
}

func (h *tbHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &tbHandler{t: h.t, attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], as...)}
}

func (h *tbHandler) WithGroup(string) slog.Handler { return h }

// Writer returns an io.Writer sending each write, without its trailing
// line break, to t.Log: the output of a slog.TextHandler.
func Writer(t testing.TB) io.Writer { return tbWriter{t} }

type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
