package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run runs the tern command in dir with stdin and returns its exit
// status and output.
func run(t *testing.T, dir, stdin string, args ...string) (int, string, string) {
	t.Helper()
	old, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(old)
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestAdminCommands(t *testing.T) {
	dir := t.TempDir()
	steps := []struct {
		stdin string
		args  []string
		code  int
		want  string // in stdout, or stderr when code != 0
	}{
		{"", []string{"domain", "add", "Example.COM"}, 0, "domain example.com added"},
		{"", []string{"domain", "add", "example.com"}, 1, "exists"},
		{"", []string{"domain", "add", "bücher.example"}, 0, "xn--bcher-kva.example"},
		{"", []string{"domain", "add", "bad domain"}, 1, "invalid"},
		{"secret\n", []string{"user", "add", "--password-stdin", "Alice@example.com"}, 0, "user alice@example.com added"},
		{"secret\n", []string{"user", "add", "--password-stdin", "alice@example.com"}, 1, "exists"},
		{"secret\n", []string{"user", "add", "--password-stdin", "x@nowhere.example"}, 1, "nowhere.example"},
		{"", []string{"user", "add", "bob@example.com"}, 2, "--password-stdin"},
		{"pw\n", []string{"user", "add", "--password-stdin", "bob@example.com"}, 0, "added"},
		{"", []string{"user", "list"}, 0, "alice@example.com"},
		{"", []string{"alias", "add", "team@example.com", "alice@example.com", "bob@example.com"}, 0, "alias team@example.com added"},
		{"", []string{"alias", "add", "loop1@example.com", "loop1@example.com"}, 1, "loop"},
		{"", []string{"alias", "list"}, 0, "alice@example.com, bob@example.com"},
		{"", []string{"mailbox", "list", "alice@example.com"}, 0, "\\Drafts"},
		{"", []string{"domain", "remove", "example.com"}, 1, "--force"},
		{"", []string{"user", "quota", "alice@example.com", "1000000"}, 0, ""},
		{"", []string{"check"}, 0, "store OK"},
		{"", []string{"gc"}, 0, "unreferenced bodies removed"},
		{"", []string{"user", "remove", "bob@example.com"}, 0, "removed"},
		{"", []string{"domain", "remove", "--force", "example.com"}, 0, "removed"},
		{"", []string{"user", "list"}, 0, "ADDRESS"},
		{"", []string{"nonsense"}, 2, "unknown command"},
		{"", []string{"user", "frobnicate"}, 2, "unknown subcommand"},
		{"", []string{"config", "check"}, 0, "built-in defaults"},
	}
	for _, s := range steps {
		code, out, errOut := run(t, dir, s.stdin, s.args...)
		text := out
		if s.code != 0 {
			text = errOut
		}
		if code != s.code || !strings.Contains(text, s.want) {
			t.Errorf("tern %s: exit %d, want %d; output %q lacks %q (stderr %q)", strings.Join(s.args, " "), code, s.code, text, s.want, errOut)
		}
	}
	if _, out, _ := run(t, dir, "", "user", "list"); strings.Contains(out, "alice@example.com") {
		t.Errorf("forced domain removal left its users: %s", out)
	}
}

func TestConfigCheckReportsProblems(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.toml")
	os.WriteFile(p, []byte("hostname = \"\"\nfoo = 1\n"), 0o600)
	code, _, errOut := run(t, dir, "", "config", "check", "--config", p)
	if code != 1 || !strings.Contains(errOut, `unknown key "foo"`) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = run(t, dir, "", "user", "list", "--config", filepath.Join(dir, "missing.toml"))
	if code != 1 || !strings.Contains(errOut, "missing.toml") {
		t.Errorf("explicit missing config: exit %d, stderr %q", code, errOut)
	}
}

func TestHelp(t *testing.T) {
	code, out, _ := run(t, t.TempDir(), "", "help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, c := range commands() {
		if !strings.Contains(out, "tern "+c.name) {
			t.Errorf("help lacks %s", c.name)
		}
	}
	code, _, errOut := run(t, t.TempDir(), "", "user", "add", "-h")
	if code != 0 || !strings.Contains(errOut, "--password-stdin") {
		t.Errorf("user add -h: exit %d, %q", code, errOut)
	}
}
