package feed

import (
	"sync"
	"testing"
)

func signalled(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestNotifyOnlyTheAccount(t *testing.T) {
	var h Hub
	a, cancelA := h.Subscribe(1)
	defer cancelA()
	b, cancelB := h.Subscribe(2)
	defer cancelB()

	h.Notify(map[int64]struct{}{1: {}})
	if !signalled(a) {
		t.Error("subscriber of account 1 not signalled")
	}
	if signalled(b) {
		t.Error("subscriber of account 2 signalled")
	}
}

func TestSignalsCoalesce(t *testing.T) {
	var h Hub
	ch, cancel := h.Subscribe(1)
	defer cancel()
	for range 3 {
		h.Notify(map[int64]struct{}{1: {}}) // must not block
	}
	if !signalled(ch) {
		t.Fatal("not signalled")
	}
	if signalled(ch) {
		t.Error("three signals did not coalesce into one")
	}
}

func TestNotifyAll(t *testing.T) {
	var h Hub
	a, cancelA := h.Subscribe(1)
	defer cancelA()
	b, cancelB := h.Subscribe(2)
	defer cancelB()
	h.NotifyAll()
	if !signalled(a) || !signalled(b) {
		t.Error("NotifyAll missed a subscriber")
	}
}

func TestCancel(t *testing.T) {
	var h Hub
	a, cancelA := h.Subscribe(1)
	b, cancelB := h.Subscribe(1)
	defer cancelB()
	cancelA()
	cancelA() // a second call is harmless
	h.Notify(map[int64]struct{}{1: {}})
	if signalled(a) {
		t.Error("cancelled subscriber signalled")
	}
	if !signalled(b) {
		t.Error("other subscriber of the account not signalled")
	}
	cancelB()
	if len(h.subs) != 0 {
		t.Errorf("hub keeps %d accounts after every subscriber cancelled", len(h.subs))
	}
}

func TestNotifyNothing(t *testing.T) {
	var h Hub
	h.Notify(nil)
	h.NotifyAll()
}

func TestConcurrent(t *testing.T) {
	var h Hub
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				ch, cancel := h.Subscribe(int64(i % 2))
				h.Notify(map[int64]struct{}{int64(i % 2): {}})
				<-ch
				cancel()
			}
		})
	}
	wg.Wait()
}
