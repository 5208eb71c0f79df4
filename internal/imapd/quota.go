package imapd

import (
	"strconv"
)

// QUOTA (RFC 9208): one quota root, "", for the whole account, with the
// STORAGE resource in units of 1024 octets. Limits are set by the
// administrator, so SETQUOTA is refused.

func (c *conn) cmdGetQuotaRoot(tag string, p *parser) error {
	name, err := c.oneMailboxArg(p)
	if err != nil {
		return err
	}
	if _, err := c.srv.st.GetMailbox(c.ctx, c.acct.ID, name); err != nil {
		return err
	}
	acct, err := c.srv.st.GetAccountByID(c.ctx, c.acct.ID)
	if err != nil {
		return err
	}
	if acct.QuotaBytes <= 0 {
		c.writeLine("* QUOTAROOT " + c.encodeName(name))
		return c.ok(tag, "", "No quota")
	}
	c.writeLine("* QUOTAROOT " + c.encodeName(name) + ` ""`)
	c.writeLine(quotaLine(acct.UsedBytes, acct.QuotaBytes))
	return c.ok(tag, "", "GETQUOTAROOT completed")
}

func quotaLine(used, limit int64) string {
	kib := func(n int64) string { return strconv.FormatInt((n+1023)/1024, 10) }
	return `* QUOTA "" (STORAGE ` + kib(used) + " " + kib(limit) + ")"
}

func (c *conn) cmdGetQuota(tag string, p *parser) error {
	if err := p.sp(); err != nil {
		return err
	}
	root, err := p.astring()
	if err == nil {
		err = p.end()
	}
	if err != nil {
		return err
	}
	acct, err := c.srv.st.GetAccountByID(c.ctx, c.acct.ID)
	if err != nil {
		return err
	}
	if root != "" || acct.QuotaBytes <= 0 {
		return nof("NONEXISTENT", "No such quota root")
	}
	c.writeLine(quotaLine(acct.UsedBytes, acct.QuotaBytes))
	return c.ok(tag, "", "GETQUOTA completed")
}

func (c *conn) cmdSetQuota(tag string, p *parser) error {
	return nof("NOPERM", "Quotas are set by the administrator")
}
