package web

import (
	"cmp"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/ternmail/tern/internal/mailboxname"
	"github.com/ternmail/tern/internal/store"
)

// folderNode is one level of the mailbox hierarchy, as the navigation
// and the folders page show it.
type folderNode struct {
	Name string // this level only
	Path string // the full name
	// Box is nil for a level that is not a mailbox itself: a parent
	// deleted with its children kept, or a level never created (an IMAP
	// RENAME to a new path does not create the levels above).
	Box       *mailboxView
	Current   bool
	Protected bool
	Children  []*folderNode
}

// protected reports whether the web refuses to rename or delete a
// mailbox. Besides INBOX, which IMAP keeps too, these are the special-use
// mailboxes (RFC 6154): the web sends into Sent and Drafts and deletes
// into Trash, deliver files quarantined mail into "Junk" by name, and
// clients are set up to use them. Archive, the one other special-use
// mailbox every account gets, is kept alike.
func protected(name, specialUse string) bool {
	return name == "INBOX" || specialUse != ""
}

// folderTree builds the hierarchy of mbs. Siblings are ordered INBOX
// first, then the special-use mailboxes in the order they were made
// (Sent, Drafts, … for a new account), then the rest by name.
func folderTree(mbs []mailboxView, current int64) []*folderNode {
	byPath := map[string]*folderNode{}
	var roots []*folderNode
	var node func(path string) *folderNode
	node = func(path string) *folderNode {
		if n := byPath[path]; n != nil {
			return n
		}
		n := &folderNode{Path: path, Name: path}
		byPath[path] = n
		if p := mailboxname.Parent(path); p != "" {
			n.Name = path[len(p)+len(mailboxname.Sep):]
			parent := node(p)
			parent.Children = append(parent.Children, n)
		} else {
			roots = append(roots, n)
		}
		return n
	}
	for i := range mbs {
		mb := &mbs[i]
		n := node(mb.Name)
		n.Box, n.Current, n.Protected = mb, mb.ID == current, protected(mb.Name, mb.SpecialUse)
	}
	var sortLevel func([]*folderNode)
	sortLevel = func(ns []*folderNode) {
		slices.SortFunc(ns, compareFolders)
		for _, n := range ns {
			sortLevel(n.Children)
		}
	}
	sortLevel(roots)
	return roots
}

func compareFolders(a, b *folderNode) int {
	rank := func(n *folderNode) int {
		switch {
		case n.Path == "INBOX":
			return 0
		case n.Box != nil && n.Box.SpecialUse != "":
			return 1
		}
		return 2
	}
	if c := cmp.Compare(rank(a), rank(b)); c != 0 {
		return c
	}
	if rank(a) == 1 {
		return cmp.Compare(a.Box.ID, b.Box.ID)
	}
	return cmp.Or(cmp.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)), strings.Compare(a.Name, b.Name))
}

// folderLevel is what the folders page's recursive template needs at
// each level: the nodes, and the token for their forms.
type folderLevel struct {
	CSRF    string
	Folders []*folderNode
}

type foldersData struct {
	pageData
	Parents []mailboxView // where a new folder may go
}

func (s *Server) foldersPage(w http.ResponseWriter, r *http.Request, u *userCtx) {
	p, err := s.page(r.Context(), u, "Folders", 0)
	if err != nil {
		s.serverError(w, r, "folders page", err)
		return
	}
	d := &foldersData{pageData: p, Parents: slices.Clone(p.Mailboxes)}
	slices.SortFunc(d.Parents, func(a, b mailboxView) int { return strings.Compare(a.Name, b.Name) })
	s.render(w, r, http.StatusOK, "folders", d)
}

// folderName reads a name typed into a form: surrounding blanks are a
// typing slip, not part of the name, and INBOX is spelled canonically.
func folderName(s string) string {
	return mailboxname.Canonical(strings.TrimSpace(s))
}

// checkFolderName applies the rules IMAP CREATE and RENAME apply, in the
// page's words.
func checkFolderName(name string) error {
	err := mailboxname.Check(name)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mailboxname.ErrEmpty):
		return &userError{"Enter a folder name."}
	case errors.Is(err, mailboxname.ErrTooLong):
		return &userError{"That folder name is too long: at most " + strconv.Itoa(mailboxname.MaxBytes) + " bytes, its parents' names included."}
	case errors.Is(err, mailboxname.ErrTooDeep):
		return &userError{"Folders can be nested at most " + strconv.Itoa(mailboxname.MaxDepth) + " levels deep."}
	case errors.Is(err, mailboxname.ErrBadChar), errors.Is(err, mailboxname.ErrNotUTF8):
		return &userError{"Folder names cannot contain control characters, “*” or “%”."}
	case errors.Is(err, mailboxname.ErrEmptyLevel):
		return &userError{"A folder name cannot start or end with “/” or contain “//”: each level needs a name."}
	}
	return &userError{"That folder name is not allowed."}
}

// folderCreate creates a folder, under a parent if one is chosen. Like
// IMAP CREATE, a trailing "/" is dropped (RFC 3501 §6.3.3) and missing
// parents are created.
func (s *Server) folderCreate(w http.ResponseWriter, r *http.Request, u *userCtx) {
	ctx := r.Context()
	name := strings.TrimSuffix(strings.TrimSpace(r.PostFormValue("name")), mailboxname.Sep)
	if name == "" {
		s.folderError(w, r, u, &userError{"Enter a folder name."})
		return
	}
	if pid := r.PostFormValue("parent"); pid != "" {
		parent, err := s.findMailbox(ctx, u.acct.ID, pid)
		if err != nil {
			s.folderError(w, r, u, err)
			return
		}
		name = parent.Name + mailboxname.Sep + name
	}
	name = folderName(name)
	if err := checkFolderName(name); err != nil {
		s.folderError(w, r, u, err)
		return
	}
	if name == "INBOX" {
		s.folderError(w, r, u, &userError{"INBOX always exists."})
		return
	}
	if err := mailboxname.CreateParents(ctx, s.st, u.acct.ID, name); err != nil {
		s.folderError(w, r, u, err)
		return
	}
	if _, err := s.st.CreateMailbox(ctx, u.acct.ID, name, ""); err != nil {
		s.folderError(w, r, u, existsAs(err, name))
		return
	}
	s.log.Info("web folder created", "user", u.acct.Address, "mailbox", name)
	u.sess.setFlash("Folder “"+name+"” created.", false)
	http.Redirect(w, r, "/folders", http.StatusSeeOther)
}

func existsAs(err error, name string) error {
	if errors.Is(err, store.ErrExists) {
		return &userError{"A folder named “" + name + "” already exists."}
	}
	return err
}

// folderRename renames a folder and every folder below it, as IMAP
// RENAME does (RFC 3501 §6.3.5). The new name is a full path, so a
// folder moves in the hierarchy by changing its parent part.
func (s *Server) folderRename(w http.ResponseWriter, r *http.Request, u *userCtx) {
	ctx := r.Context()
	mbs, err := s.st.ListMailboxes(ctx, u.acct.ID)
	if err != nil {
		s.folderError(w, r, u, err)
		return
	}
	mb, ok := mailboxByID(mbs, r.PathValue("mb"))
	if !ok {
		s.folderError(w, r, u, store.ErrNoSuchMailbox)
		return
	}
	to := folderName(r.PostFormValue("name"))
	if err := checkRename(mbs, mb, to); err != nil {
		s.folderError(w, r, u, err)
		return
	}
	if err := s.st.RenameMailbox(ctx, u.acct.ID, mb.Name, to); err != nil {
		s.folderError(w, r, u, existsAs(err, to))
		return
	}
	if err := mailboxname.CreateParents(ctx, s.st, u.acct.ID, to); err != nil {
		s.folderError(w, r, u, err)
		return
	}
	s.log.Info("web folder renamed", "user", u.acct.Address, "mailbox", mb.Name, "to", to)
	u.sess.setFlash("Folder “"+mb.Name+"” renamed to “"+to+"”.", false)
	http.Redirect(w, r, "/folders", http.StatusSeeOther)
}

// checkRename refuses a rename the store would refuse, or would do in a
// way this page does not allow, with the reason in the page's words.
func checkRename(mbs []store.Mailbox, mb store.Mailbox, to string) error {
	if protected(mb.Name, mb.SpecialUse) {
		return &userError{"“" + mb.Name + "” is a special folder and cannot be renamed."}
	}
	if err := checkFolderName(to); err != nil {
		return err
	}
	switch {
	case to == mb.Name:
		return &userError{"“" + to + "” is already the folder's name."}
	case to == "INBOX":
		return &userError{"INBOX always exists."}
	case mailboxname.Within(to, mb.Name):
		return &userError{"A folder cannot be moved into itself."}
	}
	for _, o := range mbs {
		if !mailboxname.Within(o.Name, mb.Name) {
			if o.Name == to {
				return &userError{"A folder named “" + to + "” already exists."}
			}
			continue
		}
		if o.ID == mb.ID {
			continue
		}
		// The subfolders move along: each must stay movable and
		// within the name rules at its new place.
		if protected(o.Name, o.SpecialUse) {
			return &userError{"“" + mb.Name + "” contains the special folder “" + o.Name + "”, which cannot be renamed."}
		}
		moved := to + o.Name[len(mb.Name):]
		if err := checkFolderName(moved); err != nil {
			return &userError{"Its subfolder would become “" + moved + "”: " + err.Error()}
		}
		if _, ok := mailboxByName(mbs, moved); ok {
			return &userError{"Its subfolder would become “" + moved + "”, which already exists."}
		}
	}
	return nil
}

func mailboxByID(mbs []store.Mailbox, idText string) (store.Mailbox, bool) {
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil {
		return store.Mailbox{}, false
	}
	i := slices.IndexFunc(mbs, func(m store.Mailbox) bool { return m.ID == id })
	if i < 0 {
		return store.Mailbox{}, false
	}
	return mbs[i], true
}

func mailboxByName(mbs []store.Mailbox, name string) (store.Mailbox, bool) {
	i := slices.IndexFunc(mbs, func(m store.Mailbox) bool { return m.Name == name })
	if i < 0 {
		return store.Mailbox{}, false
	}
	return mbs[i], true
}

type folderDeleteData struct {
	pageData
	Mailbox  store.Mailbox
	Messages int
	Children []string // kept, as the store keeps them
}

// folderDeletePage is the confirmation step: deleting a folder removes
// its messages for good, so the page says how many before asking. It
// works without the script, unlike a data-confirm prompt.
func (s *Server) folderDeletePage(w http.ResponseWriter, r *http.Request, u *userCtx) {
	ctx := r.Context()
	mbs, err := s.st.ListMailboxes(ctx, u.acct.ID)
	if err != nil {
		s.serverError(w, r, "folder delete page", err)
		return
	}
	mb, ok := mailboxByID(mbs, r.PathValue("mb"))
	if !ok {
		s.folderError(w, r, u, store.ErrNoSuchMailbox)
		return
	}
	if protected(mb.Name, mb.SpecialUse) {
		s.folderError(w, r, u, &userError{"“" + mb.Name + "” is a special folder and cannot be deleted."})
		return
	}
	st, err := s.st.MailboxStatus(ctx, mb.ID)
	if err != nil {
		s.serverError(w, r, "folder delete page", err)
		return
	}
	p, err := s.page(ctx, u, "Delete folder "+mb.Name, mb.ID)
	if err != nil {
		s.serverError(w, r, "folder delete page", err)
		return
	}
	d := &folderDeleteData{pageData: p, Mailbox: mb, Messages: st.Messages}
	for _, o := range mbs {
		if o.ID != mb.ID && mailboxname.Within(o.Name, mb.Name) {
			d.Children = append(d.Children, o.Name)
		}
	}
	slices.Sort(d.Children)
	s.render(w, r, http.StatusOK, "folderdelete", d)
}

// folderDelete deletes a folder and its messages. Its subfolders stay,
// as the store (and IMAP DELETE, RFC 3501 §6.3.4) leaves them. A POST
// that did not come from the confirmation page is sent there.
func (s *Server) folderDelete(w http.ResponseWriter, r *http.Request, u *userCtx) {
	ctx := r.Context()
	mb, err := s.findMailbox(ctx, u.acct.ID, r.PathValue("mb"))
	if err != nil {
		s.folderError(w, r, u, err)
		return
	}
	if protected(mb.Name, mb.SpecialUse) {
		s.folderError(w, r, u, &userError{"“" + mb.Name + "” is a special folder and cannot be deleted."})
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		http.Redirect(w, r, "/folders/"+strconv.FormatInt(mb.ID, 10)+"/delete", http.StatusSeeOther)
		return
	}
	if err := s.st.DeleteMailbox(ctx, u.acct.ID, mb.Name); err != nil {
		s.folderError(w, r, u, err)
		return
	}
	s.log.Info("web folder deleted", "user", u.acct.Address, "mailbox", mb.Name)
	u.sess.setFlash("Folder “"+mb.Name+"” deleted.", false)
	http.Redirect(w, r, "/folders", http.StatusSeeOther)
}

// folderError shows why a folder action failed on the folders page.
func (s *Server) folderError(w http.ResponseWriter, r *http.Request, u *userCtx, err error) {
	var ue *userError
	switch {
	case errors.As(err, &ue):
		u.sess.setFlash(ue.msg, true)
	case errors.Is(err, store.ErrNoSuchMailbox):
		u.sess.setFlash("That folder does not exist (any more).", true)
	case errors.Is(err, store.ErrExists):
		u.sess.setFlash("A folder with that name already exists.", true)
	default:
		s.log.Error("web folder action", "user", u.acct.Address, "path", r.URL.Path, "err", err)
		u.sess.setFlash("The change failed; try again later.", true)
	}
	http.Redirect(w, r, "/folders", http.StatusSeeOther)
}
