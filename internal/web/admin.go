package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/ternmail/tern/internal/accounts"
	"github.com/ternmail/tern/internal/deliver"
	"github.com/ternmail/tern/internal/store"
)

type adminData struct {
	pageData
	Hostname string
	Domains  []domainView
	Users    []store.Account
	Aliases  []store.Alias
	Queue    []store.QueueEntry
}

// domainView is a domain with the DNS records it needs to receive mail
// here.
type domainView struct {
	store.Domain
	Records []string
}

func (s *Server) adminPage(w http.ResponseWriter, r *http.Request, u *userCtx) {
	ctx := r.Context()
	p, err := s.page(ctx, u, "Administration", 0)
	if err != nil {
		s.serverError(w, r, "admin page", err)
		return
	}
	d := &adminData{pageData: p, Hostname: s.cfg.Hostname}
	doms, err := s.st.ListDomains(ctx)
	if err == nil {
		for _, dm := range doms {
			d.Domains = append(d.Domains, domainView{Domain: dm, Records: dnsRecords(dm.Name, s.cfg.Hostname)})
		}
		d.Users, err = s.st.ListAccounts(ctx, "")
	}
	if err == nil {
		d.Aliases, err = s.st.ListAliases(ctx, "")
	}
	if err == nil {
		d.Queue, err = s.st.ListQueue(ctx)
	}
	if err != nil {
		s.serverError(w, r, "admin page", err)
		return
	}
	s.render(w, r, http.StatusOK, "admin", d)
}

// dnsRecords are the records a domain needs for mail to reach this host
// and for receivers to trust what it sends (RFC 5321 §5.1, RFC 7208,
// RFC 7489). DKIM keys are not generated yet.
func dnsRecords(domain, host string) []string {
	return []string{
		domain + ". MX 10 " + host + ".",
		domain + `. TXT "v=spf1 mx -all"`,
		"_dmarc." + domain + `. TXT "v=DMARC1; p=quarantine"`,
	}
}

func (s *Server) queueEntryPage(w http.ResponseWriter, r *http.Request, u *userCtx) {
	ctx := r.Context()
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		s.errorPage(w, r, u, http.StatusNotFound, "No such queue entry.")
		return
	}
	var entry *store.QueueEntry
	e, events, err := s.st.GetQueueEntry(ctx, id)
	switch {
	case err == nil:
		entry = &e
	case errors.Is(err, store.ErrNotFound):
		// Delivered, bounced or removed: the journey remains.
		events, err = s.st.QueueEvents(ctx, id)
		if err != nil || len(events) == 0 {
			s.errorPage(w, r, u, http.StatusNotFound, "No such queue entry.")
			return
		}
	default:
		s.serverError(w, r, "queue entry", err)
		return
	}
	p, err := s.page(ctx, u, "Queue entry "+strconv.FormatInt(id, 10), 0)
	if err != nil {
		s.serverError(w, r, "queue page", err)
		return
	}
	s.render(w, r, http.StatusOK, "queue", &struct {
		pageData
		ID     int64
		Entry  *store.QueueEntry
		Events []store.Event
	}{p, id, entry, events})
}

// adminPost runs one admin form through accounts.Manager (names
// normalised, passwords hashed, alias rules kept) or the store.
func (s *Server) adminPost(w http.ResponseWriter, r *http.Request, u *userCtx) {
	ctx := r.Context()
	v := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	back := "/admin"
	var msg string
	var err error
	switch r.PathValue("action") {
	case "domain-add":
		err = s.accounts.AddDomain(ctx, v("domain"))
		msg = "Domain added."
	case "domain-remove":
		err = s.accounts.RemoveDomain(ctx, v("domain"), false)
		msg = "Domain removed."
	case "domain-catchall":
		msg, err = s.setCatchAll(ctx, v("domain"), v("target"), r.PostFormValue("op") == "clear")
	case "user-add":
		var a store.Account
		a, err = s.accounts.AddUser(ctx, v("address"), r.PostFormValue("password"))
		if err == nil {
			if q := v("quota"); q != "" {
				err = s.setQuota(ctx, a, q)
			}
		}
		msg = "User added."
	case "user-remove":
		var a store.Account
		if a, err = s.st.GetAccount(ctx, normalize(v("address"))); err == nil {
			if a.ID == u.acct.ID {
				err = &userError{"You cannot remove your own account."}
			} else if err = s.accounts.RemoveUser(ctx, a.Address); err == nil {
				s.sessions.removeAccount(a.ID)
			}
		}
		msg = "User removed."
	case "user-password":
		err = s.accounts.SetPassword(ctx, v("address"), r.PostFormValue("password"))
		msg = "Password changed."
	case "user-quota":
		var a store.Account
		if a, err = s.st.GetAccount(ctx, normalize(v("address"))); err == nil {
			err = s.setQuota(ctx, a, v("quota"))
		}
		msg = "Quota set."
	case "user-admin":
		var a store.Account
		if a, err = s.st.GetAccount(ctx, normalize(v("address"))); err == nil {
			if a.ID == u.acct.ID {
				err = &userError{"You cannot change your own administrator rights."}
			} else {
				err = s.st.SetAdmin(ctx, a.ID, v("admin") == "yes")
			}
		}
		msg = "Administrator rights changed."
	case "alias-add":
		targets := strings.FieldsFunc(v("targets"), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' })
		err = s.accounts.AddAlias(ctx, v("address"), targets, r.PostFormValue("sendas") == "on")
		msg = "Alias added."
	case "alias-remove":
		err = s.accounts.RemoveAlias(ctx, v("address"))
		msg = "Alias removed."
	case "queue-retry", "queue-remove":
		var id int64
		id, err = strconv.ParseInt(v("id"), 10, 64)
		if err != nil {
			err = store.ErrNotFound
		} else if r.PathValue("action") == "queue-retry" {
			err = s.st.RetryQueueEntry(ctx, id, s.now())
			msg = "The entry will be tried again now."
		} else {
			err = s.st.RemoveQueueEntry(ctx, id)
			msg = "Queue entry removed."
		}
		back = "/admin#queue"
	default:
		http.Error(w, "unknown action", http.StatusNotFound)
		return
	}
	if err != nil {
		u.sess.setFlash(adminError(err), true)
		if !errors.As(err, new(*userError)) && !errors.Is(err, store.ErrInvalid) && !errors.Is(err, store.ErrNotFound) &&
			!errors.Is(err, store.ErrExists) && !errors.Is(err, store.ErrInUse) {
			s.log.Error("web admin", "action", r.PathValue("action"), "err", err)
		}
	} else {
		s.log.Info("web admin", "user", u.acct.Address, "action", r.PathValue("action"))
		u.sess.setFlash(msg, false)
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// setCatchAll sets or clears a domain's catch-all through
// accounts.Manager, which refuses a local target that is neither an
// account nor an alias. Before that it asks deliver what mail to the
// target would do, so that a target whose mail could not be delivered
// (a remote address, or an alias forwarding to one, while relaying is
// off) is refused here rather than bouncing every message later. No loop
// check is needed: a target must exist, so it never falls to a
// catch-all itself, and deliver expands each address once.
func (s *Server) setCatchAll(ctx context.Context, domain, target string, clear bool) (string, error) {
	d, err := accounts.NormalizeDomain(domain)
	if err != nil {
		return "", &userError{"“" + domain + "” is not a valid domain name."}
	}
	if _, err := s.st.GetDomain(ctx, d); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", &userError{"The domain " + d + " is not served here."}
		}
		return "", err
	}
	if clear {
		return "Catch-all for " + d + " turned off: mail to unknown addresses there is refused.", s.accounts.SetCatchAll(ctx, d, "")
	}
	if target == "" {
		return "", &userError{"Enter the address that should get mail for unknown addresses at " + d + ", or choose Clear."}
	}
	t, err := accounts.NormalizeAddress(target)
	if err != nil {
		return "", &userError{"“" + target + "” is not a valid address."}
	}
	_, err = s.deliver.Resolve(ctx, t)
	if errors.Is(err, deliver.ErrNotLocal) {
		_, err = s.deliver.Remote(t)
	}
	switch {
	case err == nil, errors.Is(err, store.ErrQuota):
		// A full mailbox is a passing state, not a wrong target.
	case errors.Is(err, deliver.ErrRelayUnavailable):
		return "", &userError{t + " is, or forwards to, an address in another domain, and relaying is off: mail for it could not be delivered."}
	case errors.Is(err, deliver.ErrUnknownUser), errors.Is(err, deliver.ErrBadAddress):
		return "", &userError{"No account or alias " + t + " exists here; add it first."}
	default:
		return "", err
	}
	if err := s.accounts.SetCatchAll(ctx, d, t); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", &userError{"No account or alias " + t + " exists here; add it first."}
		}
		return "", err
	}
	return "Mail to unknown addresses at " + d + " now goes to " + t + ".", nil
}

func normalize(addr string) string {
	if a, err := accounts.NormalizeAddress(addr); err == nil {
		return a
	}
	return addr
}

// setQuota sets a quota given in MiB; 0 or empty removes it.
func (s *Server) setQuota(ctx context.Context, a store.Account, mib string) error {
	n := int64(0)
	if mib != "" {
		v, err := strconv.ParseFloat(mib, 64)
		if err != nil || v < 0 || v > 1<<40 {
			return &userError{"The quota must be a number of MiB (0 for none)."}
		}
		n = int64(v * (1 << 20))
	}
	return s.st.SetQuota(ctx, a.ID, n)
}

// adminError is the text shown for a failed admin action: the reason
// when it is the user's, a generic line otherwise.
func adminError(err error) string {
	var ue *userError
	switch {
	case errors.As(err, &ue):
		return ue.msg
	case errors.Is(err, store.ErrNotFound):
		return "Not found."
	case errors.Is(err, store.ErrExists):
		return "It already exists."
	case errors.Is(err, store.ErrInUse):
		return "It is in use: " + err.Error()
	case errors.Is(err, store.ErrInvalid):
		return "Invalid: " + err.Error()
	}
	return "The change failed; see the server log."
}
