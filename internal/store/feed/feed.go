// Package feed is the change feed behind store.Store.Subscribe: each
// account has a set of subscribers, and a store signals them after a
// change to the account's mailboxes commits. Signals coalesce and never
// block the store's writer: a subscriber's channel has room for one
// pending signal, which is all a waiter needs to know it must look again.
package feed

import "sync"

// Hub holds the subscribers of one store. The zero value is ready to use;
// a Hub must not be copied after first use. It is safe for concurrent use.
type Hub struct {
	mu   sync.Mutex
	subs map[int64]map[chan struct{}]struct{} // by account
}

// Subscribe implements store.Store.Subscribe: it returns a channel
// signalled after each change to the account, and cancel, which releases
// it and may be called more than once.
func (h *Hub) Subscribe(accountID int64) (ch <-chan struct{}, cancel func()) {
	c := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = make(map[int64]map[chan struct{}]struct{})
	}
	m := h.subs[accountID]
	if m == nil {
		m = make(map[chan struct{}]struct{})
		h.subs[accountID] = m
	}
	m[c] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return c, func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.subs[accountID], c)
			if len(h.subs[accountID]) == 0 {
				delete(h.subs, accountID)
			}
			h.mu.Unlock()
		})
	}
}

// Notify signals the subscribers of the accounts, without blocking.
func (h *Hub) Notify(accounts map[int64]struct{}) {
	if len(accounts) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for id := range accounts {
		signal(h.subs[id])
	}
}

// NotifyAll signals every subscriber, for when changes may have been
// missed (a lost connection to other nodes' notifications).
func (h *Hub) NotifyAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.subs {
		signal(m)
	}
}

func signal(subs map[chan struct{}]struct{}) {
	for c := range subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}
