package storetest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ternmail/tern/internal/store"
)

// Body makes message body i, of size bytes: distinct for each i (when
// size leaves room for its Message-ID), so no two share a blob.
func Body(i, size int) []byte {
	hdr := fmt.Sprintf("Message-ID: <%d@bench>\r\nSubject: bench\r\n\r\n", i)
	b := make([]byte, 0, size)
	b = append(b, hdr...)
	for len(b) < size {
		b = append(b, "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopq\r\n"...)
	}
	return b[:size]
}

// DeliverMany delivers n distinct bodies (Body) of size bytes from
// writers goroutines, writer w through stores[w%len(stores)] (nodes
// sharing one database), body i into the INBOX of
// accounts[i%len(accounts)]. It returns an error a delivery failed with,
// after the other writers stop.
func DeliverMany(ctx context.Context, stores []store.Store, accounts []int64, writers, n, size int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := range writers {
		s := stores[w%len(stores)]
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				if i > n {
					return
				}
				blob, err := s.Spool(ctx, bytes.NewReader(Body(i, size)), 1<<30)
				if err == nil {
					_, err = s.Deliver(ctx, &store.Delivery{Blob: blob,
						Local: []store.Target{{AccountID: accounts[i%len(accounts)], Mailbox: "INBOX"}}})
				}
				if err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	err, _ := failed.Load().(error)
	return err
}
