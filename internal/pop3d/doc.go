// Package pop3d is Tern's POP3 door: RFC 1939 with the RFC 2449
// extensions (CAPA, response codes, TOP, UIDL, PIPELINING), RFC 5034 SASL
// authentication (PLAIN, LOGIN) and RFC 2595 STLS, plus implicit TLS on
// port 995.
//
// It is our own code because no maintained Go POP3 server library exists:
// the few packages that do are abandoned, keep the maildrop in memory or
// lack STLS, SASL and pipelining. The protocol is small, so a state machine
// over the store is less code and risk than adapting one.
//
// The maildrop is the account's INBOX, the same one IMAP shows. At login
// the session takes the exclusive lock "pop3:<account id>" (store.Lock),
// and snapshots the UIDs and sizes of the messages present: mail that
// arrives later is seen by the next session (RFC 1939 §4 numbers messages
// for the whole session). The unique-id listing (UIDL) is
// "<uidvalidity>.<uid>", stable across sessions and shared with IMAP's
// view. DELE only marks; QUIT in the TRANSACTION state expunges the marked
// messages durably before answering +OK (RFC 1939 §6). Any other end of a
// session — a dropped connection, the autologout timer, a shutdown —
// deletes nothing.
//
// A session holds little memory while idle: small bufio buffers and one
// 16-byte entry per message of the snapshot. Large buffers used to stream
// RETR and TOP come from a pool and go back once the reply is written.
package pop3d
