package testenv

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// Serve runs serve (a door's Serve or ServeTLS) on a new listener on
// 127.0.0.1:0 and returns its address. The test fails if serve returns
// any error but closed (the door's ErrServerClosed).
func Serve(t testing.TB, serve func(net.Listener) error, closed error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if err := serve(ln); !errors.Is(err, closed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	return ln.Addr().String()
}

// Shutdown calls shutdown (a door's Shutdown) when the test ends,
// allowing it 5 seconds to drain, and fails the test on its error.
func Shutdown(t testing.TB, shutdown func(context.Context) error) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
}
