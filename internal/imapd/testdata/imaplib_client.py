"""Drives Tern's IMAP server with Python's imaplib (an IMAP4rev1 client).

Usage: imaplib_client.py HOST PORT USER PASSWORD
Exits non-zero, with the failed check on stderr, when anything is wrong.
"""
import imaplib
import sys
import time

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def ok(result, what):
    typ, data = result
    assert typ == "OK", f"{what}: {typ} {data}"
    return data


m = imaplib.IMAP4(host, port)
assert "IMAP4REV1" in m.capabilities, m.capabilities
ok(m.login(user, password), "login")

names = ok(m.list(), "list")
assert any(b'"INBOX"' in n or n.endswith(b" INBOX") for n in names), names
assert any(b"\\Sent" in n for n in names), names

# Non-ASCII name in modified UTF-7: "Entwürfe" is "Entw&APw-rfe".
ok(m.create("Entw&APw-rfe"), "create")
names = ok(m.list('""', "Entw*"), "list pattern")
assert b"Entw&APw-rfe" in names[0], names

msg = b"From: py@example.org\r\nSubject: from python\r\n\r\nhello from imaplib\r\n"
typ, data = m.append("INBOX", "(\\Flagged)", imaplib.Time2Internaldate(time.time()), msg)
assert typ == "OK" and b"APPENDUID" in data[0], data

typ, data = m.select("INBOX")
assert typ == "OK" and int(data[0]) >= 1, data
count = int(data[0])

data = ok(m.search(None, "FLAGGED", 'SUBJECT "from python"'), "search")
seqs = data[0].split()
assert len(seqs) == 1, data

data = ok(m.fetch(seqs[0], "(RFC822.SIZE BODY.PEEK[TEXT] FLAGS)"), "fetch")
assert data[0][1] == b"hello from imaplib\r\n", data
assert b"\\Flagged" in data[1], data

data = ok(m.uid("SEARCH", "ALL"), "uid search")
assert len(data[0].split()) == count, data

ok(m.store(seqs[0], "+FLAGS", "(\\Seen)"), "store")
data = ok(m.fetch(seqs[0], "(FLAGS)"), "fetch flags")
assert b"\\Seen" in data[0], data

ok(m.copy(seqs[0], "Entw&APw-rfe"), "copy")
data = ok(m.status("Entw&APw-rfe", "(MESSAGES UNSEEN)"), "status")
assert b"MESSAGES 1" in data[0] and b"UNSEEN 0" in data[0], data

ok(m.store(seqs[0], "+FLAGS.SILENT", "(\\Deleted)"), "store deleted")
data = ok(m.expunge(), "expunge")
assert data[0] == seqs[0], data

ok(m.close(), "close")
m.logout()
print("ok")
