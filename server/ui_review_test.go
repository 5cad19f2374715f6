package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
)

// A form body is read only up to 64 KiB, before any check: a big POST
// /login is refused without being held in memory, and logs nobody in.
func TestUIRefusesLargeForms(t *testing.T) {
	ts := startUI(t, nil)
	b := newBrowser(t, ts)
	csrf := b.loginForm()
	form := url.Values{"csrf": {csrf}, "username": {AdminUser}, "password": {ts.adminPW}, "pad": {strings.Repeat("x", 1<<20)}}
	resp, body := b.post("/login", form)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(pageError(body), "too large") {
		t.Fatalf("1 MiB login form: %d %q, want 400 saying it is too large", resp.StatusCode, pageError(body))
	}
	if setsSession(resp) {
		t.Fatal("a refused login form set a session")
	}
	b.mustLogin()
	n := len(mustTokens(t, ts.state))
	resp, _ = b.post("/tokens", url.Values{"csrf": {b.csrf()}, "ttl": {"1h"}, "uses": {"1"}, "role": {"push"}, "pad": {strings.Repeat("x", 1<<20)}})
	if resp.StatusCode != http.StatusBadRequest || len(mustTokens(t, ts.state)) != n {
		t.Fatalf("1 MiB token form: %d and %d token(s), want 400 and %d", resp.StatusCode, len(mustTokens(t, ts.state)), n)
	}
}

// The default UI address being taken does not stop the registry; an
// address the user chose does, with an error naming it.
func TestUIAddressTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ts := startServer(t, func(o *Options) { o.UIListen, o.UIOptional = ln.Addr().String(), true })
	if ts.srv.UIAddr() != nil {
		t.Fatal("UI bound an address that is taken")
	}
	if resp := ts.do("GET", "/v2/", "", "", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("registry without its UI: GET /v2/ = %d, want 401", resp.StatusCode)
	}
	if !strings.Contains(ts.logs.String(), "web UI not served") {
		t.Errorf("no warning logged:\n%s", ts.logs.String())
	}

	st, err := Ensure(t.TempDir(), testOptions("taken"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(t.Context(), st, Options{Listen: "127.0.0.1:0", UIListen: ln.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) || !strings.Contains(err.Error(), "web UI") {
		t.Fatalf("New with a taken --ui-listen: %v, want an error naming the address", err)
	}
}

// When the registry listener fails, Serve returns, whatever background
// loops (a daily GC schedule) are waiting.
func TestServeReturnsWhenListenerFails(t *testing.T) {
	st, err := Ensure(t.TempDir(), testOptions("fail"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sched, err := ParseGCSchedule("daily@03:00")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(t.Context(), st, Options{Listen: "127.0.0.1:0", UIListen: "127.0.0.1:0", GCSchedule: sched})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	time.Sleep(100 * time.Millisecond)
	srv.ln.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Serve returned nil after its listener failed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return 10 s after its listener failed")
	}
}

// The confirmation shows a digest; if a push moved the tag since, the
// delete is refused and the new image keeps its tag.
func TestUIDeleteTagRefusesMovedTag(t *testing.T) {
	ts := startUI(t, nil)
	b := newBrowser(t, ts)
	b.mustLogin()
	one, _ := random.Image(512, 1)
	two, _ := random.Image(512, 1)
	ts.push(t, "app:v1", one)
	_, body := b.get("/images/delete?repo=app&tag=v1")
	_, fields := deleteForm(t, body)
	d1, _ := one.Digest()
	if fields.Get("digest") != d1.String() {
		t.Fatalf("confirm form digest %q, want %s", fields.Get("digest"), d1)
	}
	ts.push(t, "app:v1", two) // someone pushes meanwhile
	resp, body := b.post("/images/delete", fields)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(pageError(body), "moved") {
		t.Fatalf("delete of a moved tag: %d %q, want 409", resp.StatusCode, pageError(body))
	}
	if got := tagRefs(t, ts); !slices.Equal(got, []string{"app:v1"}) {
		t.Fatalf("tags after a refused delete: %v", got)
	}
	err := ts.state.DeleteTagAt(t.Context(), "app", "v1", d1.String())
	if !errors.Is(err, ErrTagMoved) {
		t.Fatalf("DeleteTagAt with the old digest: %v", err)
	}
}

// The clients page shows when a client was last seen from memory, not
// from the file the server saves every 15 s.
func TestUIClientsLastSeenIsCurrent(t *testing.T) {
	ts := startUI(t, nil)
	jr := joinClient(t, ts, "fresh", RolePull)
	if resp := ts.do("GET", "/v2/", jr.ClientID, jr.Secret, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/ as the client: %d", resp.StatusCode)
	}
	b := newBrowser(t, ts)
	b.mustLogin()
	_, body := b.get("/clients")
	row := regexp.MustCompile(`(?s)<tr data-client="` + regexp.QuoteMeta(jr.ClientID) + `".*?</tr>`).FindString(body)
	if !strings.Contains(row, `class="last-seen"><time`) {
		t.Fatalf("last seen not shown for a client that just made a request:\n%s", row)
	}
}

// `edgecrd init --ip` while serve runs: the UI shows the new address and
// the join command uses it.
func TestUIFollowsDeviceChanges(t *testing.T) {
	ts := startUI(t, nil)
	b := newBrowser(t, ts)
	b.mustLogin()
	o := testOptions("test")
	o.IPs = []net.IP{net.ParseIP("198.18.0.77")}
	if _, err := Ensure(ts.state.Dir, o, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, body := b.get("/")
	if !strings.Contains(body, `<dd id="ips">198.18.0.77</dd>`) {
		t.Errorf("device page does not show the new IP")
	}
	resp, _ := b.post("/tokens", url.Values{"csrf": {b.csrf()}, "ttl": {"1h"}, "uses": {"1"}, "role": {"pull"}})
	_, body = b.get(seeOther(t, resp).String())
	if !strings.Contains(body, "edgecr join https://198.18.0.77:") {
		t.Errorf("join command does not use the new IP:\n%s", regexp.MustCompile(`(?s)<textarea id="join-command".*?</textarea>`).FindString(body))
	}
}
