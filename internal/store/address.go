package store

import (
	"fmt"
	"strings"
)

// AddressDomain returns the domain of a canonical local@domain address,
// for the implementations' shape checks; callers normalise addresses
// (package accounts) before they reach the store.
func AddressDomain(addr string) (string, error) {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return "", fmt.Errorf("%w: address %q has no local@domain form", ErrInvalid, addr)
	}
	return addr[i+1:], nil
}

// QueueGroup is the recipients of one destination domain: a delivery
// makes one queue entry per group, so the relay sends each domain its
// recipients in one SMTP transaction.
type QueueGroup struct {
	Domain     string // lower case
	Recipients []QueueRecipient
}

// GroupByDomain splits remote recipients by domain, in the order the
// domains first appear.
func GroupByDomain(rcpts []QueueRecipient) ([]QueueGroup, error) {
	var out []QueueGroup
	index := map[string]int{}
	for _, r := range rcpts {
		dom, err := AddressDomain(r.Address)
		if err != nil {
			return nil, err
		}
		dom = strings.ToLower(dom)
		i, ok := index[dom]
		if !ok {
			i = len(out)
			index[dom] = i
			out = append(out, QueueGroup{Domain: dom})
		}
		out[i].Recipients = append(out[i].Recipients, r)
	}
	return out, nil
}
