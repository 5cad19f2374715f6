package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A post-login target never leaves the UI's origin, however a browser
// reads it: browsers drop tabs and newlines inside URLs and take '\' for
// '/'.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/clients", "//evil.example/x", "/\t/evil.example", "/\\evil.example", "https://evil.example", "/images?repo=a&tag=b", "/%2F%2Fevil", "javascript:alert(1)", ""} {
		f.Add(s)
	}
	base, _ := url.Parse("https://127.0.0.1:8443/login")
	f.Fuzz(func(t *testing.T, s string) {
		got := safeNext(s)
		if got != "/" && got != s {
			t.Fatalf("safeNext(%q) = %q: neither the input nor /", s, got)
		}
		browser := strings.Map(func(r rune) rune {
			switch {
			case r == '\t' || r == '\n' || r == '\r':
				return -1
			case r == '\\':
				return '/'
			}
			return r
		}, got)
		ref, err := url.Parse(browser)
		if err != nil {
			t.Fatalf("safeNext(%q) = %q, which does not parse: %v", s, got, err)
		}
		if u := base.ResolveReference(ref); u.Scheme != "https" || u.Host != base.Host {
			t.Fatalf("safeNext(%q) = %q leads to %s", s, got, u)
		}
	})
}

func FuzzParseTTL(f *testing.F) {
	for _, s := range []string{"24h", "7d", "365d", "366d", "281474976710657d", "-1d", "0d", "1h30m", " 2d ", "d", "1.5d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseTTL(s)
		if err != nil {
			if !strings.Contains(err.Error(), "duration") && !strings.Contains(err.Error(), "too long") {
				t.Fatalf("parseTTL(%q): unclear error %v", s, err)
			}
			return
		}
		if strings.HasSuffix(strings.TrimSpace(s), "d") && (d <= 0 || d > maxTokenTTL || d%(24*time.Hour) != 0) {
			t.Fatalf("parseTTL(%q) = %s", s, d)
		}
	})
}

// Every form the web UI reads (login, token creation, revocation, token
// removal, tag deletion) and the query strings of its pages, with a live
// session and its CSRF token or without: never a 5xx, never a panic, and a
// token only from a form within the documented bounds.
func FuzzUIForms(f *testing.F) {
	st, h, sess, cookie := fuzzUI(f)
	// The harness works: a valid form with the session's CSRF token
	// creates a token.
	req := httptest.NewRequest(http.MethodPost, "https://127.0.0.1/tokens",
		strings.NewReader("csrf="+url.QueryEscape(sess.csrf)+"&ttl=1h&uses=1&role=push"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if tks, err := st.Tokens(); err != nil || len(tks) != 1 || w.Code != http.StatusSeeOther {
		f.Fatalf("creating a token through the form: %d, %d tokens, %v\n%s", w.Code, len(tks), err, w.Body)
	}
	for _, s := range []struct {
		route      uint8
		form, path string
	}{
		{1, "ttl=24h&uses=1&role=push", ""},
		{1, "ttl=7d&uses=1000&role=pull", ""},
		{1, "ttl=366d&uses=0&role=admin", ""},
		{1, "ttl=%00&uses=-1&role=", ""},
		{0, "username=admin&password=x&next=//evil", ""},
		{2, "", "c-0000000000000001"},
		{3, "", "00000000000000aa"},
		{4, "repo=a/b&tag=latest&digest=sha256:00", ""},
		{5, "", "repo=a&tag=..%2F"},
		{6, "", "q=%ff%fe&page=-1"},
		{1, "csrf=x&ttl=1h&uses=1&role=push", ""},
	} {
		f.Add(s.route, s.form, s.path)
	}
	f.Fuzz(func(t *testing.T, route uint8, form, path string) {
		var req *http.Request
		post := func(target string) *http.Request {
			body := form
			if route&0x80 == 0 { // with the session's CSRF token
				body = "csrf=" + url.QueryEscape(sess.csrf) + "&" + form
			}
			r := httptest.NewRequest(http.MethodPost, "https://127.0.0.1/", strings.NewReader(body))
			r.URL.Path = target
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}
		switch route & 0x7f % 7 {
		case 0:
			req = post("/login")
		case 1:
			req = post("/tokens")
		case 2:
			req = post("/clients/" + path + "/revoke")
		case 3:
			req = post("/tokens/" + path + "/delete")
		case 4:
			req = post("/images/delete")
		case 5:
			req = httptest.NewRequest(http.MethodGet, "https://127.0.0.1/images/delete", nil)
			req.URL.RawQuery = path
		case 6:
			req = httptest.NewRequest(http.MethodGet, "https://127.0.0.1/images", nil)
			req.URL.RawQuery = path
		}
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
		before := len(tokenIDs(t, st))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s %q: %d\n%s", req.Method, req.URL.Path, form, w.Code, w.Body)
		}
		created := len(tokenIDs(t, st)) > before
		if !created || route&0x7f%7 != 1 {
			return
		}
		vals, err := url.ParseQuery(form)
		if err != nil || route&0x80 != 0 {
			t.Fatalf("a token was created from %q (CSRF token sent: %v)", form, route&0x80 == 0)
		}
		ttl, terr := parseTTL(vals.Get("ttl"))
		uses, uerr := strconv.Atoi(strings.TrimSpace(vals.Get("uses")))
		role := Role(vals.Get("role"))
		if terr != nil || ttl < time.Minute || ttl > maxTokenTTL || uerr != nil || uses < 1 || uses > 1000 || role != RolePush && role != RolePull {
			t.Fatalf("a token was created from %q", form)
		}
	})
}

// fuzzUI is a device in a temp dir and its web UI's handler, with a
// logged-in admin session (its CSRF token and cookie value) for fuzz
// targets that post forms or render pages.
func fuzzUI(f *testing.F) (*State, http.Handler, *uiSession, string) {
	f.Helper()
	st, err := Ensure(f.TempDir(), testOptions("fuzz"), time.Now())
	if err != nil {
		f.Fatalf("initialising data dir: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	srv, err := New(ctx, st, Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatalf("creating the server: %v", err)
	}
	u, err := newUI(srv)
	if err != nil {
		f.Fatalf("creating the UI: %v", err)
	}
	sess, cookie := u.sessions.create(AdminUser)
	return st, u.handler(), sess, cookie
}
