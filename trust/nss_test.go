package trust_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"
	"github.com/edgecr/edgecr/trust"
	"github.com/edgecr/edgecr/trust/trusttest"
)

// Every place a browser keeps its NSS database is found, and only
// databases in the SQL format (cert9.db); nothing is created.
func TestFindNSSDBs(t *testing.T) {
	home := t.TempDir()
	with := []string{
		".pki/nssdb",
		"snap/chromium/current/.pki/nssdb",
		".mozilla/firefox/abcd.default-release",
		".mozilla/firefox/efgh.work",
		"snap/firefox/common/.mozilla/firefox/ijkl.default",
		".var/app/org.mozilla.firefox/.mozilla/firefox/mnop.default",
	}
	for _, d := range with {
		writeFile(t, filepath.Join(home, d, "cert9.db"), "")
	}
	mkdir(t, filepath.Join(home, ".mozilla/firefox/legacy.default")) // cert8.db only
	writeFile(t, filepath.Join(home, ".mozilla/firefox/legacy.default/cert8.db"), "")
	writeFile(t, filepath.Join(home, ".mozilla/firefox/profiles.ini"), "")
	got, err := trust.FindNSSDBs(home, filepath.Glob)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, d := range with {
		want = append(want, filepath.Join(home, d))
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("found %q\nwant  %q", got, want)
	}
	empty, err := trust.FindNSSDBs(t.TempDir(), filepath.Glob)
	if err != nil || len(empty) != 0 {
		t.Errorf("empty home: %q, %v", empty, err)
	}
	if _, err := trust.FindNSSDBs("", filepath.Glob); err == nil {
		t.Error("no home: no error")
	}
}

// The command lines, against the emulator: add with trust C,, from a
// staged file that is gone afterwards; remove by nickname only when the
// certificate is ours.
func TestNSSCommands(t *testing.T) {
	em := trusttest.NewNSS()
	r := &trusttest.Runner{Respond: em.Respond}
	tmp := t.TempDir()
	n := &trust.NSS{Home: t.TempDir(), Run: r, TempDir: tmp}
	dir := "/home/alice/.pki/nssdb"
	em.Create(dir)
	ca := trusttest.NewCA(t, "edgecr device CA")
	ctx := context.Background()

	if changed, err := n.Install(ctx, dir, "ecr.box_31001", ca); err != nil || !changed {
		t.Fatalf("Install = %v, %v", changed, err)
	}
	calls := r.Calls()
	if len(calls) != 2 || !slices.Equal(calls[1][:9], []string{"certutil", "-A", "-d", "sql:" + dir, "-t", "C,,", "-n", "ecr.box_31001", "-i"}) {
		t.Fatalf("calls: %q", calls)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("staged file left behind: %v", left)
	}
	if changed, err := n.Install(ctx, dir, "ecr.box_31001", ca); err != nil || changed {
		t.Errorf("second Install = %v, %v", changed, err)
	}
	if in, err := n.Installed(ctx, dir, "ecr.box_31001", ca); err != nil || !in {
		t.Errorf("Installed = %v, %v", in, err)
	}
	// Another certificate under the name is not replaced, nor removed.
	other := trusttest.NewCA(t, "someone else's")
	em.Add(dir, "taken", other)
	if _, err := n.Install(ctx, dir, "taken", ca); err == nil || !strings.Contains(err.Error(), "another certificate has that nickname") {
		t.Errorf("Install over another certificate: %v", err)
	}
	if changed, err := n.Uninstall(ctx, dir, "taken", ca); err != nil || changed {
		t.Errorf("Uninstall of another certificate = %v, %v", changed, err)
	}
	if in, _ := n.Installed(ctx, dir, "taken", other); !in {
		t.Error("another certificate was removed")
	}
	// A database that does not open is an error, not "not installed".
	if _, err := n.Installed(ctx, "/nowhere", "x", ca); err == nil || !strings.Contains(err.Error(), "bad database") {
		t.Errorf("Installed in a broken database: %v", err)
	}
	// certutil missing is trust.ErrToolMissing.
	missing := &trust.NSS{Run: &trusttest.Runner{Missing: []string{"certutil"}}}
	if _, err := missing.Install(ctx, dir, "x", ca); !errors.Is(err, trust.ErrToolMissing) {
		t.Errorf("certutil missing: %v", err)
	}
}

// newNSSDB creates an empty NSS database with the real certutil, as a
// browser's first start would.
func newNSSDB(t *testing.T, dir string) {
	t.Helper()
	mkdir(t, dir)
	if out, err := exec.Command("certutil", "-N", "-d", "sql:"+dir, "--empty-password").CombinedOutput(); err != nil {
		t.Fatalf("certutil -N: %v\n%s", err, out)
	}
}

// The real certutil (libnss3-tools) on databases the test creates: the CA
// goes in trusted as a CA (C,,), is found, stays once, and goes out again;
// a certificate of the user's under another name is untouched.
func TestNSSRealCertutil(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("browsers keep NSS databases in the home on Linux")
	}
	testenv.NeedCommand(t, "certutil", "the browser trust tests run the real certutil (apt install libnss3-tools)")
	home := t.TempDir()
	chromium := filepath.Join(home, ".pki/nssdb")
	firefox := filepath.Join(home, ".mozilla/firefox/x1.default-release")
	newNSSDB(t, chromium)
	newNSSDB(t, firefox)
	n := &trust.NSS{Home: home, Run: trust.ExecRunner{}, TempDir: t.TempDir()}
	dbs, err := n.Find()
	if want := []string{firefox, chromium}; err != nil || !slices.Equal(dbs, want) { // sorted: .mozilla < .pki
		t.Fatalf("Find = %q, %v", dbs, err)
	}
	ca, users := trusttest.NewCA(t, "edgecr device CA"), trusttest.NewCA(t, "the user's own")
	usersFile := filepath.Join(t.TempDir(), "own.pem")
	writeFile(t, usersFile, string(users))
	if out, err := exec.Command("certutil", "-A", "-d", "sql:"+firefox, "-t", "C,,", "-n", "own", "-i", usersFile).CombinedOutput(); err != nil {
		t.Fatalf("adding the user's certificate: %v\n%s", err, out)
	}
	ctx := context.Background()
	const name = "ecr.box.internal_31001"
	for _, db := range dbs {
		if in, err := n.Installed(ctx, db, name, ca); err != nil || in {
			t.Fatalf("%s: Installed before = %v, %v", db, in, err)
		}
		if changed, err := n.Install(ctx, db, name, ca); err != nil || !changed {
			t.Fatalf("%s: Install = %v, %v", db, changed, err)
		}
		if changed, err := n.Install(ctx, db, name, ca); err != nil || changed {
			t.Fatalf("%s: second Install = %v, %v", db, changed, err)
		}
		if in, err := n.Installed(ctx, db, name, ca); err != nil || !in {
			t.Fatalf("%s: Installed = %v, %v", db, in, err)
		}
		out, err := exec.Command("certutil", "-L", "-d", "sql:"+db).CombinedOutput()
		if err != nil || !regexpLine(string(out), name, "C,,") {
			t.Errorf("%s: certutil -L does not list %s trusted C,,: %v\n%s", db, name, err, out)
		}
	}
	for _, db := range dbs {
		if changed, err := n.Uninstall(ctx, db, name, ca); err != nil || !changed {
			t.Fatalf("%s: Uninstall = %v, %v", db, changed, err)
		}
		if changed, err := n.Uninstall(ctx, db, name, ca); err != nil || changed {
			t.Fatalf("%s: second Uninstall = %v, %v", db, changed, err)
		}
		if in, err := n.Installed(ctx, db, name, ca); err != nil || in {
			t.Fatalf("%s: Installed after = %v, %v", db, in, err)
		}
	}
	if in, err := n.Installed(ctx, firefox, "own", users); err != nil || !in {
		t.Errorf("the user's certificate: %v, %v", in, err)
	}
	// A profile deleted since: nothing to remove, no error.
	if changed, err := n.Uninstall(ctx, filepath.Join(home, ".mozilla/firefox/gone"), name, ca); err != nil || changed {
		t.Errorf("Uninstall in a deleted profile = %v, %v", changed, err)
	}
}

// regexpLine reports whether a certutil -L listing has a line with the
// nickname and the trust flags.
func regexpLine(listing, name, flags string) bool {
	for _, l := range strings.Split(listing, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == name && f[1] == flags {
			return true
		}
	}
	return false
}
