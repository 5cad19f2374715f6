package agent_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/agent/agenttest"
	"github.com/edgecr/edgecr/e2e/testenv"
	"github.com/edgecr/edgecr/trust"
	"github.com/edgecr/edgecr/trust/trusttest"
)

func (e *env) joinBrowsers(token string) (*agent.JoinResult, error) {
	e.t.Helper()
	return e.sys.Join(context.Background(), agent.JoinOptions{URL: e.dev.URL, Token: token, Name: "laptop", Browsers: true, Report: e.report})
}

// join --browsers with the real certutil, on NSS databases the test
// creates in the user's home: the CA goes into Chromium's and each Firefox
// profile's database, status checks them, leave takes it out of exactly
// those; a profile that trusted the CA before join keeps it.
func TestJoinBrowsersRealCertutil(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("browsers keep NSS databases in the home on Linux")
	}
	certutil := testenv.NeedCommand(t, "certutil", "join --browsers runs the real certutil (apt install libnss3-tools)")
	e := newEnv(t, envOptions{})
	chromium := filepath.Join(e.home, ".pki/nssdb")
	firefox := filepath.Join(e.home, ".mozilla/firefox/x1.default-release")
	before := filepath.Join(e.home, ".mozilla/firefox/x2.had-it")
	for _, db := range []string{chromium, firefox, before} {
		mkdirAll(t, db)
		if out, err := exec.Command(certutil, "-N", "-d", "sql:"+db, "--empty-password").CombinedOutput(); err != nil {
			t.Fatalf("certutil -N: %v\n%s", err, out)
		}
	}
	nss := &trust.NSS{Home: e.home, Run: trust.ExecRunner{}, TempDir: t.TempDir()}
	e.sys.Browsers = nss
	ctx := context.Background()
	name := agent.TrustName(e.dev.Registry())
	if _, err := nss.Install(ctx, before, name, e.dev.CAPEM); err != nil {
		t.Fatal(err)
	}

	res, err := e.joinBrowsers(e.dev.Token(agenttest.TokenOptions{}))
	if err != nil {
		t.Fatalf("join --browsers: %v\n%s", err, e.output())
	}
	for _, db := range []string{chromium, firefox, before} {
		if in, err := nss.Installed(ctx, db, name, e.dev.CAPEM); err != nil || !in {
			t.Errorf("%s after join: %v, %v", db, in, err)
		}
	}
	out := e.output()
	for _, w := range []string{"added the CA as \"" + name + "\" to " + chromium, "added the CA as \"" + name + "\" to " + firefox, before + " already trusts the CA"} {
		if !strings.Contains(out, w) {
			t.Errorf("join output lacks %q:\n%s", w, out)
		}
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings: %q", res.Warnings)
	}

	rs, err := e.sys.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, found := checkByName(rs[0], agent.CheckBrowsers)
	if !found || !c.OK || !strings.Contains(c.Detail, "2 NSS database(s)") {
		t.Errorf("status: %+v", c)
	}
	// A database losing the CA shows in status.
	if _, err := nss.Uninstall(ctx, firefox, name, e.dev.CAPEM); err != nil {
		t.Fatal(err)
	}
	rs, _ = e.sys.Status(ctx)
	if c, _ := checkByName(rs[0], agent.CheckBrowsers); c.OK || !strings.Contains(c.Detail, firefox) || !strings.Contains(c.Fix, "--browsers") {
		t.Errorf("status with the CA gone from %s: %+v", firefox, c)
	}
	// Joining again puts it back.
	if _, err := e.joinBrowsers(e.dev.Token(agenttest.TokenOptions{})); err != nil {
		t.Fatal(err)
	}
	if in, _ := nss.Installed(ctx, firefox, name, e.dev.CAPEM); !in {
		t.Error("a second join --browsers did not put the CA back")
	}

	e.leave()
	for db, want := range map[string]bool{chromium: false, firefox: false, before: true} {
		if in, err := nss.Installed(ctx, db, name, e.dev.CAPEM); err != nil || in != want {
			t.Errorf("%s after leave: %v, %v; want %v", db, in, err, want)
		}
	}
}

// Without certutil, join --browsers joins and says what to install; without
// --browsers, certutil is never run.
func TestJoinBrowsersWithoutCertutil(t *testing.T) {
	e := newEnv(t, envOptions{})
	mkdirAll(t, filepath.Join(e.home, ".pki/nssdb"))
	writeFileAll(t, filepath.Join(e.home, ".pki/nssdb/cert9.db"))
	r := &trusttest.Runner{Missing: []string{"certutil"}}
	e.sys.Browsers = &trust.NSS{Home: e.home, Run: r}
	res, err := e.joinBrowsers(e.dev.Token(agenttest.TokenOptions{}))
	if err != nil {
		t.Fatalf("join --browsers without certutil: %v", err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "libnss3-tools") {
		t.Errorf("warnings: %q", res.Warnings)
	}
	e.leave()

	em := trusttest.NewNSS()
	em.Create(filepath.Join(e.home, ".pki/nssdb"))
	r = &trusttest.Runner{Respond: em.Respond}
	e.sys.Browsers = &trust.NSS{Home: e.home, Run: r}
	e.mustJoin(e.dev.Token(agenttest.TokenOptions{}))
	e.leave()
	if calls := r.Calls(); len(calls) != 0 {
		t.Errorf("join without --browsers ran %q", calls)
	}
}

func mkdirAll(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFileAll(t *testing.T, path string) {
	t.Helper()
	mkdirAll(t, filepath.Dir(path))
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}
