package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"html"
	"io"
	"mime"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
)

// The web UI driven as a browser would: a cookie jar, form posts carrying
// the hidden csrf field, redirects looked at rather than followed.

// uiClock is a clock the test moves by hand, for Options.Now.
type uiClock struct {
	mu  sync.Mutex
	now time.Time
}

func newUIClock() *uiClock { return &uiClock{now: time.Now()} }

func (c *uiClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *uiClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// startUI starts a server with the web UI on a loopback port.
func startUI(t *testing.T, mod func(*Options)) *testServer {
	t.Helper()
	ts := startServer(t, func(o *Options) {
		o.UIListen = "127.0.0.1:0"
		if mod != nil {
			mod(o)
		}
	})
	if ts.srv.UIAddr() == nil {
		t.Fatal("UIListen set but UIAddr is nil")
	}
	return ts
}

// browser is one user agent talking to the UI. It sends each request on
// its own and follows no redirect: Location headers are for the test to
// judge, including ones Go's client would refuse to parse.
type browser struct {
	t    *testing.T
	ts   *testServer
	base *url.URL
	tr   *http.Transport
	jar  http.CookieJar // nil: cookies only as the test sets them
}

func newBrowser(t *testing.T, ts *testServer) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := ts.transport()
	t.Cleanup(tr.CloseIdleConnections)
	return &browser{
		t:    t,
		ts:   ts,
		base: &url.URL{Scheme: "https", Host: ts.srv.UIAddr().String(), Path: "/"},
		tr:   tr,
		jar:  jar,
	}
}

// send sends req and returns the response with its body read and closed.
func (b *browser) send(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	if b.jar != nil {
		for _, c := range b.jar.Cookies(req.URL) {
			req.AddCookie(c)
		}
	}
	resp, err := b.tr.RoundTrip(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL.RequestURI(), err)
	}
	resp.Request = req
	if b.jar != nil {
		b.jar.SetCookies(req.URL, resp.Cookies())
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("%s %s: reading body: %v", req.Method, req.URL.RequestURI(), err)
	}
	return resp, string(body)
}

func (b *browser) url(p string) string { return "https://" + b.base.Host + p }

func (b *browser) get(p string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.url(p), nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.send(req)
}

func (b *browser) post(p string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.url(p), strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.send(req)
}

// loginForm loads the login page and returns its csrf field.
func (b *browser) loginForm() string {
	b.t.Helper()
	resp, body := b.get("/login")
	if resp.StatusCode != http.StatusOK {
		b.t.Fatalf("GET /login: %d, want 200", resp.StatusCode)
	}
	return formCSRF(b.t, body)
}

// login posts the login form as loaded from /login.
func (b *browser) login(user, pw, next string) (*http.Response, string) {
	b.t.Helper()
	csrf := b.loginForm()
	return b.post("/login", url.Values{"csrf": {csrf}, "username": {user}, "password": {pw}, "next": {next}})
}

func (b *browser) mustLogin() {
	b.t.Helper()
	resp, body := b.login(AdminUser, b.ts.adminPW, "")
	if resp.StatusCode != http.StatusSeeOther {
		b.t.Fatalf("logging in as admin: %d, want 303; page error: %q", resp.StatusCode, pageError(body))
	}
	if b.session() == "" {
		b.t.Fatal("logged in but the jar holds no session cookie")
	}
}

// csrf is the session's form token, read from the device page.
func (b *browser) csrf() string {
	b.t.Helper()
	resp, body := b.get("/")
	if resp.StatusCode != http.StatusOK {
		b.t.Fatalf("GET /: %d, want 200 (logged in?)", resp.StatusCode)
	}
	return formCSRF(b.t, body)
}

// session is the session cookie's value in the jar, "" when there is none.
func (b *browser) session() string {
	for _, c := range b.jar.Cookies(b.base) {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	return ""
}

// loggedIn says whether GET / shows the device page.
func (b *browser) loggedIn() bool {
	b.t.Helper()
	resp, _ := b.get("/")
	switch resp.StatusCode {
	case http.StatusOK:
		return true
	case http.StatusSeeOther:
		return false
	}
	b.t.Fatalf("GET /: %d, want 200 or 303", resp.StatusCode)
	return false
}

var (
	csrfRE  = regexp.MustCompile(`<input type="hidden" name="csrf" value="([^"]*)">`)
	errorRE = regexp.MustCompile(`(?s)<p class="error" role="alert" id="error">(.*?)</p>`)
)

func formCSRF(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil || m[1] == "" {
		t.Fatalf("page has no csrf field:\n%s", body)
	}
	return html.UnescapeString(m[1])
}

// pageError is the text of the page's error banner, "" without one.
func pageError(body string) string {
	if m := errorRE.FindStringSubmatch(body); m != nil {
		return html.UnescapeString(m[1])
	}
	return ""
}

// seeOther checks that resp is a 303 and returns its Location as parsed.
func seeOther(t *testing.T, resp *http.Response) *url.URL {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("%s %s: %d, want 303", resp.Request.Method, resp.Request.URL.RequestURI(), resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("%s %s: Location %q: %v", resp.Request.Method, resp.Request.URL.RequestURI(), loc, err)
	}
	return u
}

// toLogin checks that resp sends the browser to the login page and
// returns the redirect's query.
func toLogin(t *testing.T, resp *http.Response) url.Values {
	t.Helper()
	u := seeOther(t, resp)
	if u.Host != "" || u.Path != "/login" {
		t.Fatalf("%s %s redirects to %q, want /login", resp.Request.Method, resp.Request.URL.RequestURI(), u)
	}
	return u.Query()
}

// setCookieNamed is the cookie name as the response's Set-Cookie headers
// set it, not as a jar keeps it.
func setCookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// setsSession says whether resp hands out a (non-empty) session cookie.
func setsSession(resp *http.Response) bool {
	c := setCookieNamed(resp, sessionCookie)
	return c != nil && c.Value != "" && c.MaxAge >= 0
}

func tokenIDs(t *testing.T, st *State) []string {
	t.Helper()
	var ids []string
	for _, tk := range mustTokens(t, st) {
		ids = append(ids, tk.ID)
	}
	return ids
}

// tagRefs is every repo:tag on the device, sorted.
func tagRefs(t *testing.T, ts *testServer) []string {
	t.Helper()
	repos, err := ts.state.Images(t.Context())
	if err != nil {
		t.Fatalf("listing images: %v", err)
	}
	var out []string
	for _, r := range repos {
		for _, tg := range r.Tags {
			out = append(out, r.Name+":"+tg.Tag)
		}
	}
	slices.Sort(out)
	return out
}

// joinClient makes a client identity the way edgecr join does.
func joinClient(t *testing.T, ts *testServer, name string, role Role) *JoinResult {
	t.Helper()
	_, token, err := ts.state.CreateToken(TokenOptions{TTL: time.Hour, Uses: 1, Role: role}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseToken(token)
	if err != nil {
		t.Fatal(err)
	}
	jr, err := ts.state.Redeem(p, name, time.Now())
	if err != nil {
		t.Fatalf("redeeming a join token: %v", err)
	}
	return jr
}

func TestUIRequiresSession(t *testing.T) {
	ts := startUI(t, nil)
	for _, c := range []struct {
		path string
		next string // the next= the login redirect carries; "" none
	}{
		{"/", ""},
		{"/certificates", "/certificates"},
		{"/certificates/ca.pem", "/certificates/ca.pem"},
		{"/certificates/ca.crt", "/certificates/ca.crt"},
		{"/clients", "/clients"},
		{"/clients/c-0123456789abcdef/revoke", "/clients/c-0123456789abcdef/revoke"},
		{"/tokens", "/tokens"},
		{"/images", "/images"},
		{"/images/delete?repo=app&tag=v1", "/images/delete?repo=app&tag=v1"},
		{"/nonexistent", "/nonexistent"},
	} {
		t.Run("GET "+c.path, func(t *testing.T) {
			resp, _ := newBrowser(t, ts).get(c.path)
			q := toLogin(t, resp)
			if got := q.Get("next"); got != c.next {
				t.Errorf("next = %q, want %q", got, c.next)
			}
			if q.Has("expired") {
				t.Errorf("redirect says expired without a session ever existing: %v", q)
			}
		})
	}
	// Without a session a POST does nothing and is not replayed after login.
	for _, p := range []string{"/logout", "/tokens", "/tokens/0123456789abcdef/delete", "/clients/c-0123456789abcdef/revoke", "/images/delete"} {
		t.Run("POST "+p, func(t *testing.T) {
			before := tokenIDs(t, ts.state)
			resp, _ := newBrowser(t, ts).post(p, url.Values{"csrf": {"x"}, "ttl": {"1h"}, "uses": {"1"}, "role": {"push"}, "repo": {"app"}, "tag": {"v1"}})
			if q := toLogin(t, resp); len(q) != 0 {
				t.Errorf("POST redirects to /login?%s, want no query", q.Encode())
			}
			if after := tokenIDs(t, ts.state); !slices.Equal(before, after) {
				t.Errorf("tokens changed by a POST without session: %v -> %v", before, after)
			}
		})
	}
	t.Run("GET /login", func(t *testing.T) {
		resp, body := newBrowser(t, ts).get("/login")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /login: %d, want 200", resp.StatusCode)
		}
		if !strings.Contains(body, `<form method="post" action="/login" id="login"`) {
			t.Errorf("login page has no login form:\n%s", body)
		}
		tok := formCSRF(t, body)
		c := setCookieNamed(resp, loginCookie)
		if c == nil || c.Value != tok {
			t.Fatalf("login cookie %v does not carry the form's csrf %q", c, tok)
		}
		if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
			t.Errorf("login cookie %q lacks the __Host- attributes (Secure, HttpOnly, SameSite=Strict, Path=/, no Domain)", c.Raw)
		}
	})
	for _, p := range []string{"/static/ui.css", "/static/ui.js", "/static/favicon.svg"} {
		t.Run("GET "+p, func(t *testing.T) {
			resp, body := newBrowser(t, ts).get(p)
			if resp.StatusCode != http.StatusOK || body == "" {
				t.Fatalf("GET %s without session: %d (%d bytes), want 200 with content", p, resp.StatusCode, len(body))
			}
		})
	}
}

func TestUILogin(t *testing.T) {
	ts := startUI(t, nil)
	client := joinClient(t, ts, "laptop", RolePush)

	// How a case fills the csrf field and the login cookie.
	const (
		csrfOK        = "matching"
		csrfMissing   = "missing"
		csrfWrong     = "wrong"
		csrfOtherForm = "another browser's" // a real token, but not this browser's cookie
		csrfNoCookie  = "no login cookie"
	)
	for _, c := range []struct {
		name       string
		user, pw   string
		csrf       string
		wantStatus int
		wantMsg    string // part of the page's error banner
	}{
		{"admin, right password", AdminUser, ts.adminPW, csrfOK, http.StatusSeeOther, ""},
		{"admin, wrong password", AdminUser, ts.adminPW + "x", csrfOK, http.StatusUnauthorized, "Wrong user name or password."},
		{"admin, empty password", AdminUser, "", csrfOK, http.StatusUnauthorized, "Wrong user name or password."},
		{"unknown user", "root", ts.adminPW, csrfOK, http.StatusUnauthorized, "Wrong user name or password."},
		{"client credential", client.ClientID, client.Secret, csrfOK, http.StatusUnauthorized, "not the device UI: log in as admin"},
		{"no csrf field", AdminUser, ts.adminPW, csrfMissing, http.StatusForbidden, "security token"},
		{"wrong csrf", AdminUser, ts.adminPW, csrfWrong, http.StatusForbidden, "security token"},
		{"csrf of another browser", AdminUser, ts.adminPW, csrfOtherForm, http.StatusForbidden, "security token"},
		{"csrf without login cookie", AdminUser, ts.adminPW, csrfNoCookie, http.StatusForbidden, "security token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newBrowser(t, ts)
			form := url.Values{"username": {c.user}, "password": {c.pw}}
			switch c.csrf {
			case csrfOK:
				form.Set("csrf", b.loginForm())
			case csrfMissing:
				b.loginForm()
			case csrfWrong:
				b.loginForm()
				form.Set("csrf", randomToken())
			case csrfOtherForm:
				b.loginForm()
				form.Set("csrf", newBrowser(t, ts).loginForm())
			case csrfNoCookie:
				form.Set("csrf", newBrowser(t, ts).loginForm())
			}
			resp, body := b.post("/login", form)
			if resp.StatusCode != c.wantStatus {
				t.Fatalf("POST /login: %d, want %d; page error: %q", resp.StatusCode, c.wantStatus, pageError(body))
			}
			if c.wantStatus != http.StatusSeeOther {
				if setsSession(resp) || b.session() != "" {
					t.Fatalf("refused login set a session cookie: %q", resp.Header.Values("Set-Cookie"))
				}
				if msg := pageError(body); !strings.Contains(msg, c.wantMsg) {
					t.Errorf("error banner %q, want it to contain %q", msg, c.wantMsg)
				}
				// The form comes back, with the user name kept and a fresh token.
				if !strings.Contains(body, `id="login"`) || formCSRF(t, body) == "" {
					t.Errorf("refused login does not show the login form again")
				}
				if c.user != "" && !strings.Contains(body, `name="username" value="`+html.EscapeString(c.user)+`"`) {
					t.Errorf("user name %q not kept in the form", c.user)
				}
				if strings.Contains(body, c.pw) && c.pw != "" {
					t.Errorf("page echoes the password")
				}
				if b.loggedIn() {
					t.Fatal("GET / shows the device page after a refused login")
				}
				return
			}
			if u := seeOther(t, resp); u.String() != "/" {
				t.Errorf("login redirects to %q, want /", u)
			}
			var raw string
			for _, v := range resp.Header.Values("Set-Cookie") {
				if strings.HasPrefix(v, sessionCookie+"=") {
					raw = v
				}
			}
			if raw == "" {
				t.Fatalf("no %s in Set-Cookie %q", sessionCookie, resp.Header.Values("Set-Cookie"))
			}
			attrs := map[string]bool{}
			for _, a := range strings.Split(raw, ";")[1:] {
				attrs[strings.TrimSpace(a)] = true
			}
			for _, want := range []string{"Path=/", "Secure", "HttpOnly", "SameSite=Strict"} {
				if !attrs[want] {
					t.Errorf("session cookie %q lacks %s", raw, want)
				}
			}
			sc := setCookieNamed(resp, sessionCookie)
			if sc.Domain != "" || sc.MaxAge != 0 || !sc.Expires.IsZero() {
				t.Errorf("session cookie %q: want no Domain and no persistence (Max-Age/Expires)", raw)
			}
			if len(sc.Value) < 43 {
				t.Errorf("session id %q is short of 256 bits", sc.Value)
			}
			if lc := setCookieNamed(resp, loginCookie); lc == nil || lc.MaxAge >= 0 {
				t.Errorf("login cookie not cleared on success: %v", lc)
			}
			if !b.loggedIn() {
				t.Fatal("GET / after login does not show the device page")
			}
		})
	}
}

func TestUILoginThrottle(t *testing.T) {
	clock := newUIClock()
	ts := startUI(t, func(o *Options) { o.FailureBurst = 2; o.FailureEvery = time.Hour; o.Now = clock.Now })
	b := newBrowser(t, ts)
	steps := []struct {
		name       string
		pw         string
		csrf       bool
		wantStatus int
	}{
		{"form without csrf spends nothing", ts.adminPW + "x", false, http.StatusForbidden},
		{"1st wrong password", ts.adminPW + "x", true, http.StatusUnauthorized},
		{"right password spends nothing", ts.adminPW, true, http.StatusSeeOther},
		{"2nd wrong password", ts.adminPW + "x", true, http.StatusUnauthorized},
		{"3rd wrong password", ts.adminPW + "x", true, http.StatusTooManyRequests},
		// Issue 10: every tunnelled login comes from 127.0.0.1; wrong
		// ones must not lock the admin out.
		{"right password while throttled", ts.adminPW, true, http.StatusSeeOther},
		{"wrong password still throttled", ts.adminPW + "x", true, http.StatusTooManyRequests},
	}
	for _, s := range steps {
		form := url.Values{"username": {AdminUser}, "password": {s.pw}}
		if tok := b.loginForm(); s.csrf {
			form.Set("csrf", tok)
		}
		resp, body := b.post("/login", form)
		if resp.StatusCode != s.wantStatus {
			t.Fatalf("%s: %d, want %d; page error: %q", s.name, resp.StatusCode, s.wantStatus, pageError(body))
		}
		if resp.StatusCode == http.StatusSeeOther {
			// Log out again so that the next step starts without a session.
			if _, body := b.get("/"); body == "" {
				t.Fatalf("%s: empty device page", s.name)
			}
			b.post("/logout", url.Values{"csrf": {b.csrf()}})
			if b.loggedIn() {
				t.Fatalf("%s: still logged in after logout", s.name)
			}
			continue
		}
		if resp.StatusCode != http.StatusTooManyRequests {
			continue
		}
		ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil || ra < 1 || ra > 3601 {
			t.Errorf("%s: Retry-After %q, want 1..3601 seconds", s.name, resp.Header.Get("Retry-After"))
		}
		if msg := pageError(body); !strings.Contains(msg, "Too many failed logins") {
			t.Errorf("%s: error banner %q", s.name, msg)
		}
		if setsSession(resp) || b.session() != "" {
			t.Fatalf("%s: throttled login set a session cookie", s.name)
		}
	}
	// An hour on, the address has one attempt again.
	clock.Advance(time.Hour)
	if resp, body := b.login(AdminUser, ts.adminPW, ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("right password an hour later: %d, want 303; page error: %q", resp.StatusCode, pageError(body))
	}
}

func TestUICSRF(t *testing.T) {
	ts := startUI(t, nil)
	b := newBrowser(t, ts)
	b.mustLogin()
	csrf := b.csrf()
	other := newBrowser(t, ts)
	other.mustLogin()
	otherCSRF := other.csrf()
	if otherCSRF == csrf {
		t.Fatal("two sessions share a csrf token")
	}

	client := joinClient(t, ts, "ci-runner", RolePush) // spends one token, which stays listed
	doomed, _, err := ts.state.CreateToken(TokenOptions{TTL: time.Hour, Uses: 1, Role: RolePull}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	ts.push(t, "app:v1", img)
	ts.push(t, "app:keep", img)

	clientState := func(t *testing.T) string {
		cl, err := ts.state.Clients()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cl {
			if c.ID == client.ClientID {
				if c.Revoked {
					return "revoked"
				}
				return "active"
			}
		}
		return "missing"
	}
	tokenCount := func(t *testing.T) string { return strconv.Itoa(len(tokenIDs(t, ts.state))) + " tokens" }
	doomedState := func(t *testing.T) string {
		if slices.Contains(tokenIDs(t, ts.state), doomed.ID) {
			return "present"
		}
		return "absent"
	}
	tags := func(t *testing.T) string { return strings.Join(tagRefs(t, ts), ",") }
	session := func(t *testing.T) string {
		if b.loggedIn() {
			return "logged in"
		}
		return "logged out"
	}

	// In order: logout last, as it ends the session the others use.
	for _, r := range []struct {
		path      string
		form      url.Values
		state     func(*testing.T) string
		before    string
		after     string
		redirects string // the path the working POST sends the browser to
	}{
		{"/clients/" + client.ClientID + "/revoke", nil, clientState, "active", "revoked", "/clients"},
		{"/tokens", url.Values{"ttl": {"1h"}, "uses": {"1"}, "role": {"push"}}, tokenCount, "2 tokens", "3 tokens", "/tokens"},
		{"/tokens/" + doomed.ID + "/delete", nil, doomedState, "present", "absent", "/tokens"},
		{"/images/delete", url.Values{"repo": {"app"}, "tag": {"v1"}}, tags, "app:keep,app:v1", "app:keep", "/images"},
		{"/logout", nil, session, "logged in", "logged out", "/login"},
	} {
		t.Run(r.path, func(t *testing.T) {
			if got := r.state(t); got != r.before {
				t.Fatalf("state before: %q, want %q", got, r.before)
			}
			withCSRF := func(tok string) url.Values {
				f := url.Values{}
				for k, v := range r.form {
					f[k] = v
				}
				f.Set("csrf", tok)
				return f
			}
			noCSRF := url.Values{}
			for k, v := range r.form {
				noCSRF[k] = v
			}
			for _, bad := range []struct {
				name  string
				path  string
				form  url.Values
				extra string
			}{
				{"no csrf field", r.path, noCSRF, ""},
				{"empty csrf", r.path, withCSRF(""), ""},
				{"wrong csrf", r.path, withCSRF(randomToken()), ""},
				{"csrf of another session", r.path, withCSRF(otherCSRF), ""},
				{"session csrf with a character changed", r.path, withCSRF(csrf[:len(csrf)-1] + flip(csrf[len(csrf)-1])), ""},
				{"csrf in the query, not the form", r.path + "?csrf=" + url.QueryEscape(csrf), noCSRF, ""},
			} {
				resp, body := b.post(bad.path, bad.form)
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("%s: %d, want 403; page error: %q", bad.name, resp.StatusCode, pageError(body))
				} else if msg := pageError(body); !strings.Contains(msg, "security token") || !strings.Contains(msg, "nothing was changed") {
					t.Errorf("%s: error banner %q", bad.name, msg)
				}
				if got := r.state(t); got != r.before {
					t.Fatalf("%s changed the state: %q, want %q", bad.name, got, r.before)
				}
			}
			resp, body := b.post(r.path, withCSRF(csrf))
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("with the session's csrf: %d, want 303; page error: %q", resp.StatusCode, pageError(body))
			}
			if u := seeOther(t, resp); u.Path != r.redirects {
				t.Errorf("with the session's csrf: redirects to %q, want %s", u, r.redirects)
			}
			if got := r.state(t); got != r.after {
				t.Fatalf("state after: %q, want %q", got, r.after)
			}
		})
	}
	if !other.loggedIn() {
		t.Error("logging out one session ended the other")
	}
}

// flip returns a different base64url character than c.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func TestUIIdleTimeout(t *testing.T) {
	clock := newUIClock()
	ts := startUI(t, func(o *Options) { o.Now = clock.Now; o.UIIdleTimeout = 10 * time.Minute })

	t.Run("a request within the idle time keeps the session", func(t *testing.T) {
		b := newBrowser(t, ts)
		b.mustLogin()
		clock.Advance(9 * time.Minute)
		if resp, _ := b.get("/tokens"); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /tokens 9m after login: %d, want 200", resp.StatusCode)
		}
		clock.Advance(9 * time.Minute) // 18m after login, 9m idle
		if resp, _ := b.get("/tokens"); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /tokens 18m after login, 9m idle: %d, want 200", resp.StatusCode)
		}
		clock.Advance(11 * time.Minute) // 29m after login, 11m idle
		resp, _ := b.get("/tokens")
		q := toLogin(t, resp)
		if q.Get("expired") != "1" || q.Get("next") != "/tokens" {
			t.Errorf("idle session redirects to /login?%s, want expired=1 and next=/tokens", q.Encode())
		}
		if c := setCookieNamed(resp, sessionCookie); c == nil || c.MaxAge >= 0 {
			t.Errorf("expired session's cookie not cleared: %v", c)
		}
		if b.session() != "" {
			t.Errorf("jar still holds the session cookie")
		}
		resp, body := b.get(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("login page after expiry: %d", resp.StatusCode)
		}
		if !strings.Contains(body, `id="notice"`) || !strings.Contains(body, "Your session ended after 10m without activity") {
			t.Errorf("login page after expiry lacks the session-ended notice:\n%s", body)
		}
		if !strings.Contains(body, `name="next" value="/tokens"`) {
			t.Errorf("login page after expiry lost next=/tokens")
		}
		// And logging in again goes back to where the user was.
		csrf := formCSRF(t, body)
		resp, _ = b.post("/login", url.Values{"csrf": {csrf}, "username": {AdminUser}, "password": {ts.adminPW}, "next": {"/tokens"}})
		if u := seeOther(t, resp); u.String() != "/tokens" {
			t.Errorf("login after expiry redirects to %q, want /tokens", u)
		}
	})

	t.Run("a form posted after expiry changes nothing", func(t *testing.T) {
		b := newBrowser(t, ts)
		b.mustLogin()
		csrf := b.csrf()
		before := tokenIDs(t, ts.state)
		clock.Advance(10*time.Minute + time.Second)
		resp, body := b.post("/tokens", url.Values{"csrf": {csrf}, "ttl": {"1h"}, "uses": {"1"}, "role": {"push"}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST /tokens after expiry: %d, want 303; page error: %q", resp.StatusCode, pageError(body))
		}
		q := toLogin(t, resp)
		if q.Get("expired") != "1" || q.Has("next") {
			t.Errorf("POST after expiry redirects to /login?%s, want expired=1 and no next", q.Encode())
		}
		if after := tokenIDs(t, ts.state); !slices.Equal(before, after) {
			t.Fatalf("POST after expiry created a token: %v -> %v", before, after)
		}
	})

	t.Run("expiry is reported after someone else logs in", func(t *testing.T) {
		b := newBrowser(t, ts)
		b.mustLogin()
		clock.Advance(11 * time.Minute)
		newBrowser(t, ts).mustLogin() // another browser, while b's session is expired
		resp, _ := b.get("/tokens")
		if q := toLogin(t, resp); q.Get("expired") != "1" {
			t.Errorf("expired session redirects to /login?%s after another login, want expired=1", q.Encode())
		}
	})

	t.Run("a busy session ends 12h after login", func(t *testing.T) {
		b := newBrowser(t, ts)
		b.mustLogin()
		for elapsed := 5 * time.Minute; elapsed < uiSessionMaxAge; elapsed += 5 * time.Minute {
			clock.Advance(5 * time.Minute)
			if resp, _ := b.get("/"); resp.StatusCode != http.StatusOK {
				t.Fatalf("GET / %s after login, 5m idle: %d, want 200", elapsed, resp.StatusCode)
			}
		}
		clock.Advance(5 * time.Minute)
		resp, _ := b.get("/")
		if q := toLogin(t, resp); q.Get("expired") != "age" {
			t.Errorf("GET / 12h after login redirects to /login?%s, want expired=age", q.Encode())
		}
		if b.loggedIn() {
			t.Fatal("session outlived uiSessionMaxAge")
		}
	})
}

func TestUILogout(t *testing.T) {
	ts := startUI(t, nil)
	b := newBrowser(t, ts)
	b.mustLogin()
	old := b.session()
	csrf := b.csrf()

	resp, _ := b.post("/logout", url.Values{"csrf": {csrf}})
	if q := toLogin(t, resp); len(q) != 0 {
		t.Errorf("logout redirects to /login?%s, want no query", q.Encode())
	}
	if c := setCookieNamed(resp, sessionCookie); c == nil || c.MaxAge >= 0 {
		t.Errorf("logout does not clear the session cookie: %q", resp.Header.Values("Set-Cookie"))
	}
	if b.loggedIn() {
		t.Fatal("GET / after logout shows the device page")
	}

	// The old cookie, sent again by hand, is worthless.
	replay := newBrowser(t, ts)
	replay.jar = nil
	for _, m := range []struct {
		method, path string
		form         url.Values
	}{
		{http.MethodGet, "/", nil},
		{http.MethodGet, "/tokens", nil},
		{http.MethodPost, "/tokens", url.Values{"csrf": {csrf}, "ttl": {"1h"}, "uses": {"1"}, "role": {"push"}}},
	} {
		before := tokenIDs(t, ts.state)
		var body io.Reader
		if m.form != nil {
			body = strings.NewReader(m.form.Encode())
		}
		req, err := http.NewRequest(m.method, replay.url(m.path), body)
		if err != nil {
			t.Fatal(err)
		}
		if m.form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: old})
		resp, _ := replay.send(req)
		if q := toLogin(t, resp); q.Has("expired") {
			t.Errorf("%s %s with the logged-out cookie: /login?%s, want no expired notice", m.method, m.path, q.Encode())
		}
		if after := tokenIDs(t, ts.state); !slices.Equal(before, after) {
			t.Fatalf("%s %s with the logged-out cookie changed the tokens", m.method, m.path)
		}
	}
}

func TestUICertificates(t *testing.T) {
	ts := startUI(t, nil)
	b := newBrowser(t, ts)
	b.mustLogin()

	pemFile, err := os.ReadFile(ts.state.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	der := ts.state.CA.Cert.Raw
	for _, c := range []struct {
		path, contentType, filename string
		want                        []byte
	}{
		{"/certificates/ca.pem", "application/x-pem-file", "edgecr-test-ca.pem", pemFile},
		{"/certificates/ca.crt", "application/pkix-cert", "edgecr-test-ca.crt", der},
	} {
		t.Run(c.path, func(t *testing.T) {
			resp, body := b.get(c.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %d", c.path, resp.StatusCode)
			}
			if body != string(c.want) {
				t.Errorf("GET %s: %d bytes that differ from the device CA (%d bytes)", c.path, len(body), len(c.want))
			}
			if ct := resp.Header.Get("Content-Type"); ct != c.contentType {
				t.Errorf("Content-Type %q, want %q", ct, c.contentType)
			}
			cd := resp.Header.Get("Content-Disposition")
			if disp, params, err := mime.ParseMediaType(cd); err != nil || disp != "attachment" || params["filename"] != c.filename {
				t.Errorf("Content-Disposition %q, want an attachment named %q", cd, c.filename)
			}
		})
	}

	t.Run("fingerprint", func(t *testing.T) {
		resp, body := b.get("/certificates")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /certificates: %d", resp.StatusCode)
		}
		// Browsers on Linux keep their own trust (NSS): the page says how.
		if !strings.Contains(body, "own NSS databases") || !strings.Contains(body, "edgecr join … --browsers") {
			t.Errorf("/certificates does not tell about browsers' NSS databases:\n%s", body)
		}
		m := regexp.MustCompile(`<code id="fingerprint"[^>]*>([^<]*)</code>`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no fingerprint on /certificates:\n%s", body)
		}
		_, dl := b.get("/certificates/ca.crt")
		sum := sha256.Sum256([]byte(dl))
		if got, want := m[1], ts.state.CA.Fingerprint(); got != want {
			t.Errorf("page shows fingerprint %q, device CA has %q", got, want)
		}
		if got, want := m[1], "sha256:"+hex.EncodeToString(sum[:]); got != want {
			t.Errorf("page shows fingerprint %q, the downloaded .crt hashes to %q", got, want)
		}
	})

	t.Run("other file", func(t *testing.T) {
		if resp, _ := b.get("/certificates/ca.key"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /certificates/ca.key: %d, want 404", resp.StatusCode)
		}
	})
}

var joinCommandRE = regexp.MustCompile(`<textarea id="join-command"[^>]*>([^<]*)</textarea>`)

func TestUITokens(t *testing.T) {
	clock := newUIClock()
	ts := startUI(t, func(o *Options) { o.Now = clock.Now })
	b := newBrowser(t, ts)
	b.mustLogin()
	csrf := b.csrf()

	t.Run("created token is shown once", func(t *testing.T) {
		before := tokenIDs(t, ts.state)
		resp, body := b.post("/tokens", url.Values{"csrf": {csrf}, "ttl": {"2h"}, "uses": {"3"}, "role": {"pull"}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST /tokens: %d, want 303; page error: %q", resp.StatusCode, pageError(body))
		}
		u := seeOther(t, resp)
		id := u.Query().Get("created")
		if u.Path != "/tokens" || id == "" {
			t.Fatalf("POST /tokens redirects to %q, want /tokens?created=<id>", u)
		}
		tks := mustTokens(t, ts.state)
		if len(tks) != len(before)+1 {
			t.Fatalf("%d tokens after creating one, had %d", len(tks), len(before))
		}
		tk := tks[len(tks)-1]
		if tk.ID != id || tk.Role != RolePull || tk.Uses != 3 || tk.Used != 0 || !tk.Expires.Equal(clock.Now().Add(2*time.Hour)) {
			t.Errorf("stored token %+v, want id %s, pull, 3 uses, expiring %v", tk, id, clock.Now().Add(2*time.Hour))
		}

		resp, body = b.get(u.String())
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", u, resp.StatusCode)
		}
		m := joinCommandRE.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("GET %s shows no join command:\n%s", u, body)
		}
		join := html.UnescapeString(m[1])
		joinURL := ts.state.Device.JoinURL()
		if !strings.HasPrefix(joinURL, "https://198.18.0.10:") {
			t.Fatalf("device join URL %q does not use the first device IP", joinURL)
		}
		prefix := SudoUnlessRoot + " edgecr join " + joinURL + " --token "
		token, ok := strings.CutPrefix(join, prefix)
		if !ok || !strings.HasPrefix(token, TokenPrefix+".") {
			t.Fatalf("join command %q, want %q + token", join, prefix)
		}
		p, err := ParseToken(token)
		if err != nil {
			t.Fatalf("token on the page: %v", err)
		}
		if p.ID != id || p.Pin != ts.state.CA.Fingerprint() || HashSecret(p.Secret) != tk.SecretHash {
			t.Errorf("token on the page (id %s, pin %s) is not the stored token %s for this CA", p.ID, p.Pin, id)
		}
		if !strings.Contains(body, `data-token="`+id+`"`) {
			t.Errorf("token list lacks %s", id)
		}

		for _, again := range []string{u.String(), "/tokens"} {
			resp, body = b.get(again)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s again: %d", again, resp.StatusCode)
			}
			if strings.Contains(body, p.Secret) || strings.Contains(body, `id="created"`) || joinCommandRE.MatchString(body) {
				t.Fatalf("GET %s again still shows the token", again)
			}
			if !strings.Contains(body, `data-token="`+id+`"`) {
				t.Errorf("GET %s again: token list lacks %s", again, id)
			}
		}
	})

	for _, c := range []struct {
		ttl, uses, role string
		field           string // the field marked invalid
	}{
		{"abc", "1", "push", "ttl"},
		{"0s", "1", "push", "ttl"},
		{"59s", "1", "push", "ttl"},
		{"-1h", "1", "push", "ttl"},
		{"400d", "1", "push", "ttl"},
		{"0d", "1", "push", "ttl"},
		{"1.5d", "1", "push", "ttl"},
		{"", "1", "push", "ttl"},
		// 2^48+1 days overflows time.Duration to exactly one day.
		{"281474976710657d", "1", "push", "ttl"},
		{"24h", "0", "push", "uses"},
		{"24h", "x", "push", "uses"},
		{"24h", "1001", "push", "uses"},
		{"24h", "-1", "push", "uses"},
		{"24h", "", "push", "uses"},
		{"24h", "1", "admin", "role"},
		{"24h", "1", "", "role"},
	} {
		t.Run("invalid "+c.field+" "+strconv.Quote(map[string]string{"ttl": c.ttl, "uses": c.uses, "role": c.role}[c.field]), func(t *testing.T) {
			before := tokenIDs(t, ts.state)
			resp, body := b.post("/tokens", url.Values{"csrf": {csrf}, "ttl": {c.ttl}, "uses": {c.uses}, "role": {c.role}})
			if after := tokenIDs(t, ts.state); !slices.Equal(before, after) {
				t.Errorf("invalid form created a token: %v -> %v", before, after)
			}
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("POST /tokens: %d, want 400", resp.StatusCode)
			}
			if msg := pageError(body); !strings.Contains(msg, "The token was not created") {
				t.Errorf("error banner %q", msg)
			}
			if !regexp.MustCompile(`id="` + c.field + `" name="` + c.field + `"[^>]*aria-invalid="true"`).MatchString(body) {
				t.Errorf("field %s not marked invalid", c.field)
			}
			if n := strings.Count(body, `aria-invalid="true"`); n != 1 {
				t.Errorf("%d fields marked invalid, want 1", n)
			}
			if !strings.Contains(body, `<span class="field-error">`) {
				t.Errorf("no field error text")
			}
			for name, v := range map[string]string{"ttl": c.ttl, "uses": c.uses} {
				if !strings.Contains(body, `id="`+name+`" name="`+name+`" value="`+html.EscapeString(v)+`"`) {
					t.Errorf("form does not keep %s=%q", name, v)
				}
			}
			if (c.role == "push" || c.role == "pull") && !strings.Contains(body, `<option value="`+c.role+`" selected>`) {
				t.Errorf("form does not keep role %q", c.role)
			}
			if joinCommandRE.MatchString(body) {
				t.Errorf("invalid form shows a join command")
			}
		})
	}

	t.Run("remove unknown token", func(t *testing.T) {
		resp, _ := b.post("/tokens/0123456789abcdef/delete", url.Values{"csrf": {csrf}})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("removing an unknown token: %d, want 404", resp.StatusCode)
		}
	})
}

func TestUISecurityHeaders(t *testing.T) {
	ts := startUI(t, nil)
	anon := newBrowser(t, ts)
	b := newBrowser(t, ts)
	b.mustLogin()
	for _, c := range []struct {
		b          *browser
		path       string
		wantStatus int
	}{
		{anon, "/login", http.StatusOK},
		{anon, "/", http.StatusSeeOther},
		{anon, "/tokens", http.StatusSeeOther},
		{b, "/", http.StatusOK},
		{b, "/certificates", http.StatusOK},
		{b, "/certificates/ca.pem", http.StatusOK},
		{b, "/clients", http.StatusOK},
		{b, "/tokens", http.StatusOK},
		{b, "/images", http.StatusOK},
		{b, "/nonexistent", http.StatusNotFound},
	} {
		t.Run(c.path+" "+strconv.Itoa(c.wantStatus), func(t *testing.T) {
			resp, body := c.b.get(c.path)
			if resp.StatusCode != c.wantStatus {
				t.Fatalf("GET %s: %d, want %d", c.path, resp.StatusCode, c.wantStatus)
			}
			h := resp.Header
			if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-inline") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			for k, want := range map[string]string{
				"Cache-Control":          "no-store",
				"X-Content-Type-Options": "nosniff",
				"X-Frame-Options":        "DENY",
				"Referrer-Policy":        "no-referrer",
			} {
				if got := h.Get(k); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
			if strings.HasPrefix(h.Get("Content-Type"), "text/html") && resp.StatusCode != http.StatusSeeOther {
				// The CSP allows no inline script or style: pages have none.
				for _, inline := range []string{"<script>", " style=", " onclick=", " onload=", "<style"} {
					if strings.Contains(body, inline) {
						t.Errorf("page has inline %q, which the CSP blocks", inline)
					}
				}
			}
		})
	}
	t.Run("static", func(t *testing.T) {
		resp, _ := anon.get("/static/ui.css")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /static/ui.css: %d", resp.StatusCode)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("X-Content-Type-Options %q", got)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/css") {
			t.Errorf("Content-Type %q, want text/css", ct)
		}
	})
}

// browserTarget resolves a Location header as a browser does (WHATWG URL
// parsing): leading and trailing controls and spaces trimmed, tabs and
// newlines anywhere removed, and "\" read as "/" in http(s) URLs.
func browserTarget(base *url.URL, loc string) (*url.URL, error) {
	loc = strings.TrimFunc(loc, func(r rune) bool { return r <= ' ' })
	loc = strings.NewReplacer("\t", "", "\n", "", "\r", "", `\`, "/").Replace(loc)
	u, err := url.Parse(loc)
	if err != nil {
		return nil, err
	}
	return base.ResolveReference(u), nil
}

func TestUILoginRedirectStaysOnSite(t *testing.T) {
	ts := startUI(t, nil)
	for _, c := range []struct {
		next string
		want string // where the browser lands, as a path
	}{
		{"/tokens", "/tokens"},
		{"/images/delete?repo=app&tag=v1", "/images/delete?repo=app&tag=v1"},
		{"", "/"},
		{"//evil.example/x", "/"},
		{"https://evil.example", "/"},
		{"http://evil.example/", "/"},
		{"https:evil.example", "/"},
		{`/\evil.example`, "/"},
		{`\\evil.example`, "/"},
		{"javascript:alert(1)", "/"},
		{"evil.example", "/"},
		{" //evil.example", "/"},
		{"/login?next=//evil.example", "/"},
		// Browsers drop tabs and newlines inside URLs: "/\t/x" is "//x".
		{"/\t/evil.example", ""},
		{"/\n/evil.example", ""},
		{"/\r/evil.example", ""},
	} {
		t.Run(strconv.Quote(c.next), func(t *testing.T) {
			check := func(t *testing.T, how string, resp *http.Response) {
				t.Helper()
				if resp.StatusCode != http.StatusSeeOther {
					t.Fatalf("%s: %d, want 303", how, resp.StatusCode)
				}
				loc := resp.Header.Get("Location")
				base := &url.URL{Scheme: "https", Host: ts.srv.UIAddr().String(), Path: "/login"}
				u, err := browserTarget(base, loc)
				if err != nil {
					t.Fatalf("%s: Location %q: %v", how, loc, err)
				}
				if u.Scheme != "https" || u.Host != base.Host {
					t.Fatalf("%s: Location %q takes the browser to %s, off the device", how, loc, u)
				}
				if c.want != "" && u.RequestURI() != c.want {
					t.Errorf("%s: Location %q, want %q", how, loc, c.want)
				}
			}
			b := newBrowser(t, ts)
			resp, body := b.login(AdminUser, ts.adminPW, c.next)
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("login: %d; page error: %q", resp.StatusCode, pageError(body))
			}
			check(t, "POST /login", resp)
			// Already logged in, GET /login?next= redirects straight away.
			resp, _ = b.get("/login?next=" + url.QueryEscape(c.next))
			check(t, "GET /login when logged in", resp)
		})
	}
}

func TestUIClients(t *testing.T) {
	ts := startUI(t, nil)
	b := newBrowser(t, ts)
	b.mustLogin()

	_, body := b.get("/clients")
	if !strings.Contains(body, "No client has joined yet.") {
		t.Errorf("clients page without clients lacks the empty state:\n%s", body)
	}

	jr := joinClient(t, ts, "build-laptop", RolePush)
	if _, err := ts.srv.authn.Verify(jr.ClientID, jr.Secret); err != nil {
		t.Fatalf("joined client's credential: %v", err)
	}
	resp, body := b.get("/clients")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /clients: %d", resp.StatusCode)
	}
	row := regexp.MustCompile(`(?s)<tr data-client="` + regexp.QuoteMeta(jr.ClientID) + `">.*?</tr>`).FindString(body)
	if row == "" || !strings.Contains(row, "build-laptop") || !strings.Contains(row, ">push<") {
		t.Fatalf("clients page has no active row for build-laptop (%s):\n%s", jr.ClientID, body)
	}
	revokePath := "/clients/" + jr.ClientID + "/revoke"
	if !strings.Contains(row, `href="`+revokePath+`"`) {
		t.Errorf("row has no revoke link to %s", revokePath)
	}

	resp, body = b.get(revokePath)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `<form method="post" action="`+revokePath+`" id="confirm"`) {
		t.Fatalf("GET %s: %d, want the confirm form", revokePath, resp.StatusCode)
	}
	if _, err := ts.srv.authn.Verify(jr.ClientID, jr.Secret); err != nil {
		t.Fatalf("the confirm page revoked the client: %v", err)
	}
	resp, body = b.post(revokePath, url.Values{"csrf": {formCSRF(t, body)}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST %s: %d, want 303; page error: %q", revokePath, resp.StatusCode, pageError(body))
	}
	if u := seeOther(t, resp); u.String() != "/clients" {
		t.Errorf("revoke redirects to %q, want /clients", u)
	}
	if _, err := ts.srv.authn.Verify(jr.ClientID, jr.Secret); !errors.Is(err, ErrRevoked) {
		t.Errorf("Verify after revoke: %v, want ErrRevoked", err)
	}
	r := ts.do("GET", "/v2/", jr.ClientID, jr.Secret, nil, nil)
	r.Body.Close()
	if r.StatusCode != http.StatusUnauthorized {
		t.Errorf("registry request with the revoked credential: %d, want 401", r.StatusCode)
	}

	_, body = b.get("/clients")
	if !strings.Contains(body, `id="notice"`) || !strings.Contains(body, "build-laptop ("+jr.ClientID+") is revoked") {
		t.Errorf("clients page after revoke has no notice:\n%s", body)
	}
	if !strings.Contains(body, `<tr data-client="`+jr.ClientID+`" class="revoked">`) || strings.Contains(body, `href="`+revokePath+`"`) {
		t.Errorf("revoked client not shown as revoked, or still has a revoke link")
	}
	_, body = b.get("/clients")
	if strings.Contains(body, `id="notice"`) {
		t.Errorf("revoke notice shown twice")
	}

	for _, p := range []string{"/clients/c-0123456789abcdef/revoke", "/clients/admin/revoke"} {
		if resp, _ := b.get(p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
}

// deleteForm is the tag deletion form of a confirmation page, with its
// hidden fields.
func deleteForm(t *testing.T, body string) (string, url.Values) {
	t.Helper()
	form := regexp.MustCompile(`(?s)<form method="post" action="/images/delete" id="confirm".*?</form>`).FindString(body)
	if form == "" {
		t.Fatalf("confirm page has no delete form:\n%s", body)
	}
	fields := url.Values{}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="(\w+)" value="([^"]*)">`).FindAllStringSubmatch(form, -1) {
		fields.Set(m[1], html.UnescapeString(m[2]))
	}
	return form, fields
}

func TestUIImages(t *testing.T) {
	ts := startUI(t, nil)
	b := newBrowser(t, ts)
	b.mustLogin()

	resp, body := b.get("/images")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "No images yet") {
		t.Fatalf("GET /images without images: %d, want 200 with the empty state:\n%s", resp.StatusCode, body)
	}

	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	ts.push(t, "app:v1", img)
	ts.push(t, "app:v2", img)
	_, body = b.get("/images")
	for _, ref := range []string{"app:v1", "app:v2"} {
		if !strings.Contains(body, `data-ref="`+ref+`"`) {
			t.Errorf("/images does not list %s:\n%s", ref, body)
		}
	}
	// What Delete does, in the CLI's words (edgecr rm agrees).
	if !strings.Contains(body, "Delete removes the tag only, as <code>edgecr rm REPO:TAG</code> does") || !strings.Contains(body, "<code>edgecr rm REPO@DIGEST</code> deletes the image") {
		t.Errorf("/images does not say what Delete removes:\n%s", body)
	}
	if strings.Contains(body, "No images yet") {
		t.Errorf("/images shows the empty state with images")
	}
	checkUIReferrers(t, body, "app:v1", 0)
	ts.signAndSBOM(t, "app", img) // the SBOM's own signature is not the tag's
	_, body = b.get("/images")
	for _, ref := range []string{"app:v1", "app:v2"} {
		checkUIReferrers(t, body, ref, 2, testSBOMType, testSigType)
	}

	confirm := "/images/delete?repo=app&tag=v1"
	if !strings.Contains(body, `href="`+html.EscapeString(confirm)+`"`) {
		t.Errorf("/images has no delete link %s", confirm)
	}
	resp, body = b.get(confirm)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", confirm, resp.StatusCode)
	}
	form, fields := deleteForm(t, body)
	if !strings.Contains(form, "v2") {
		t.Errorf("confirm page does not say v2 keeps the image")
	}
	if fields.Get("repo") != "app" || fields.Get("tag") != "v1" || fields.Get("csrf") == "" {
		t.Fatalf("confirm form fields %v, want repo=app tag=v1 and a csrf", fields)
	}
	if got := tagRefs(t, ts); !slices.Equal(got, []string{"app:v1", "app:v2"}) {
		t.Fatalf("the confirm page changed the tags: %v", got)
	}
	resp, body = b.post("/images/delete", fields)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /images/delete: %d, want 303; page error: %q", resp.StatusCode, pageError(body))
	}
	if u := seeOther(t, resp); u.String() != "/images" {
		t.Errorf("delete redirects to %q, want /images", u)
	}
	_, body = b.get("/images")
	if strings.Contains(body, `data-ref="app:v1"`) || !strings.Contains(body, `data-ref="app:v2"`) {
		t.Errorf("/images after deleting app:v1 should list app:v2 only:\n%s", body)
	}
	if !strings.Contains(body, "Deleted app:v1.") {
		t.Errorf("/images after delete has no notice")
	}
	if got := tagRefs(t, ts); !slices.Equal(got, []string{"app:v2"}) {
		t.Errorf("tags after delete: %v, want [app:v2]", got)
	}
	ts.pullVerified(t, "app:v2")

	csrf := fields.Get("csrf")
	for _, c := range []struct {
		name       string
		repo, tag  string
		wantStatus int
	}{
		{"deleted tag", "app", "v1", http.StatusNotFound},
		{"unknown tag", "app", "nope", http.StatusNotFound},
		{"unknown repository", "nope", "v1", http.StatusNotFound},
		// Not the device's fault: a bad name is a bad request.
		{"invalid repository name", "../x", "v1", http.StatusBadRequest},
		{"invalid tag", "app", "../v2", http.StatusBadRequest},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := url.Values{"repo": {c.repo}, "tag": {c.tag}}
			if resp, _ := b.get("/images/delete?" + q.Encode()); resp.StatusCode != c.wantStatus {
				t.Errorf("GET confirm page: %d, want %d", resp.StatusCode, c.wantStatus)
			}
			q.Set("csrf", csrf)
			resp, body := b.post("/images/delete", q)
			if resp.StatusCode != c.wantStatus {
				t.Errorf("POST /images/delete: %d, want %d; page error: %q", resp.StatusCode, c.wantStatus, pageError(body))
			}
			if pageError(body) == "" {
				t.Errorf("POST /images/delete: no error banner")
			}
			if got := tagRefs(t, ts); !slices.Equal(got, []string{"app:v2"}) {
				t.Errorf("tags changed: %v", got)
			}
		})
	}
}
