# The single-server story with Python's standard clients: alice submits to
# bob over 587 (STARTTLS + AUTH), bob reads it over IMAP, downloads and
# deletes it over POP3, and IMAP sees it gone. Prints what it checked.
import imaplib, poplib, smtplib, ssl, sys

host = "127.0.0.1"
sub_port, imap_port, pop_port, alice_pw, bob_pw = sys.argv[1:6]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

body = (b"From: Alice <alice@a.test>\r\nTo: bob@a.test\r\nSubject: Story\r\n\r\n"
        b"Hello Bob.\r\n.a line starting with a dot\r\n..two dots\r\n")

s = smtplib.SMTP(host, int(sub_port))
s.starttls(context=ctx)
s.login("alice@a.test", alice_pw)
s.sendmail("alice@a.test", ["bob@a.test"], body)
s.quit()

i = imaplib.IMAP4(host, int(imap_port))
i.starttls(ssl_context=ctx)
i.login("bob@a.test", bob_pw)
typ, data = i.select("INBOX")
assert typ == "OK" and data[0] == b"1", data
typ, data = i.fetch("1", "(BODY.PEEK[] ENVELOPE)")
stored = data[0][1]
assert stored.endswith(body), stored
assert b"Received: " in stored and b"Return-Path: <alice@a.test>" in stored
print("imap ok")

p = poplib.POP3(host, int(pop_port))
p.stls(context=ctx)
p.user("bob@a.test")
p.pass_(bob_pw)
count, _ = p.stat()
assert count == 1, count
_, lines, _ = p.retr(1)
assert b"\r\n".join(lines) + b"\r\n" == stored, "POP3 bytes differ from IMAP bytes"
p.dele(1)
p.quit()
print("pop3 ok")

i.noop()
typ, data = i.search(None, "ALL")
assert data[0] == b"", data
i.logout()
print("expunge seen")
