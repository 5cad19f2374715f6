package server

import (
	"crypto/x509"
	"embed"
	"encoding/pem"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// The web UI: server-rendered pages on their own HTTPS listener (by default
// loopback only), for the device's admin. Pages are html/template, assets
// are embedded; the only script is the copy button's.

//go:embed ui/templates/*.html ui/static/*
var uiFiles embed.FS

// ui serves the web UI of one server.
type ui struct {
	srv      *Server
	sessions *sessions
	limiter  *failureLimiter
	pages    map[string]*template.Template
	static   http.Handler
	log      *slog.Logger
	started  time.Time
}

func newUI(s *Server) (*ui, error) {
	u := &ui{
		srv:      s,
		sessions: newSessions(s.opts.UIIdleTimeout, s.opts.Now),
		limiter:  newFailureLimiter(s.opts.FailureEvery, s.opts.FailureBurst),
		pages:    map[string]*template.Template{},
		log:      s.log.With("component", "ui"),
		started:  s.opts.Now(),
	}
	funcs := template.FuncMap{
		"size":    FormatSize,
		"ago":     func(t time.Time) string { return ago(u.srv.opts.Now(), t) },
		"until":   func(t time.Time) string { return until(u.srv.opts.Now(), t) },
		"abs":     func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") },
		"iso":     func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"short":   shortDigest,
		"kind":    mediaKind,
		"percent": percent,
		"pct":     fmtPercent,
		"join":    strings.Join,
		"dur":     func(d time.Duration) string { return d.Round(time.Millisecond).String() },
		"deref":   func(t *time.Time) time.Time { return *t },
	}
	names, err := fs.Glob(uiFiles, "ui/templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("listing UI templates: %w", err)
	}
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(uiFiles, "ui/templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("parsing UI template %s: %w", base, err)
		}
		u.pages[strings.TrimSuffix(base, ".html")] = t
	}
	st, err := fs.Sub(uiFiles, "ui/static")
	if err != nil {
		return nil, fmt.Errorf("opening UI assets: %w", err)
	}
	files := http.StripPrefix("/static/", http.FileServerFS(st))
	u.static = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
	return u, nil
}

// handler is the UI's whole routing table.
func (u *ui) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /static/", u.static)
	mux.HandleFunc("GET /login", u.loginPage)
	mux.HandleFunc("POST /login", u.login)
	mux.HandleFunc("POST /logout", u.authed(u.logout))

	mux.HandleFunc("GET /{$}", u.authed(u.devicePage))
	mux.HandleFunc("GET /certificates", u.authed(u.certificatesPage))
	mux.HandleFunc("GET /certificates/{file}", u.authed(u.certificateFile))
	mux.HandleFunc("GET /clients", u.authed(u.clientsPage))
	mux.HandleFunc("GET /clients/{id}/revoke", u.authed(u.revokeConfirm))
	mux.HandleFunc("POST /clients/{id}/revoke", u.authed(u.revoke))
	mux.HandleFunc("GET /tokens", u.authed(u.tokensPage))
	mux.HandleFunc("POST /tokens", u.authed(u.createToken))
	mux.HandleFunc("POST /tokens/{id}/delete", u.authed(u.deleteToken))
	mux.HandleFunc("GET /images", u.authed(u.imagesPage))
	mux.HandleFunc("GET /images/delete", u.authed(u.deleteTagConfirm))
	mux.HandleFunc("POST /images/delete", u.authed(u.deleteTag))
	mux.HandleFunc("GET /sync", u.authed(u.syncPage))
	mux.HandleFunc("/", u.authed(u.notFound))

	return u.headers(u.accessLog(mux))
}

const maxUIForm = 64 << 10

// headers sets what every UI response carries: no caching (pages show
// secrets once), no framing, no inline script, nothing sent to other sites.
func (u *ui) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		// Every form is small: a request body cannot make the device
		// hold megabytes before anyone has logged in.
		r.Body = http.MaxBytesReader(w, r.Body, maxUIForm)
		next.ServeHTTP(w, r)
	})
}

func (u *ui) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if strings.HasPrefix(r.URL.Path, "/static/") {
			return
		}
		u.log.Info("ui request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"remote", remoteHost(r), "duration", time.Since(start))
	})
}

type ctxKey struct{}

// authed runs h for a request with a live session, and checks the CSRF
// token of every POST. Without a session, a GET is sent to the login page
// (which comes back here afterwards) and a POST does nothing.
func (u *ui) authed(h func(http.ResponseWriter, *http.Request, *uiSession)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, state := u.sessions.lookup(r)
		if state != sessionOK {
			q := url.Values{}
			switch state {
			case sessionExpired:
				q.Set("expired", "1")
				setCookie(w, sessionCookie, "", -1)
			case sessionTooOld:
				q.Set("expired", "age")
				setCookie(w, sessionCookie, "", -1)
			}
			if r.Method == http.MethodGet && r.URL.Path != "/" {
				q.Set("next", r.URL.RequestURI())
			}
			target := "/login"
			if len(q) > 0 {
				target += "?" + q.Encode()
			}
			http.Redirect(w, r, target, http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil {
				u.fail(w, r, sess, http.StatusBadRequest, "The form could not be read: "+err.Error())
				return
			}
			if !validCSRF(sess.csrf, r.PostForm.Get("csrf")) {
				u.log.Warn("ui form refused: missing or wrong CSRF token", "path", r.URL.Path, "remote", remoteHost(r))
				u.fail(w, r, sess, http.StatusForbidden, "This form is missing its security token or the token is out of date, so nothing was changed. Reload the page and try again.")
				return
			}
		}
		h(w, r, sess)
	}
}

// view is what every page template gets.
type view struct {
	Title  string
	Nav    string // the nav entry to highlight
	Device *Device
	User   string
	CSRF   string
	Notice string
	Error  string
	Data   any
}

func (u *ui) render(w http.ResponseWriter, status int, page string, v view) {
	t := u.pages[page]
	if t == nil {
		http.Error(w, "no such page template: "+page, http.StatusInternalServerError)
		return
	}
	if v.Device == nil {
		v.Device = u.device()
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", v); err != nil {
		u.log.Error("rendering UI page", "page", page, "err", err)
		http.Error(w, "rendering page "+page+": internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprint(w, b.String())
}

func (u *ui) sessionView(sess *uiSession, title, nav string) view {
	return view{Title: title, Nav: nav, User: sess.user, CSRF: sess.csrf, Device: u.device()}
}

// device is device.json as it is now (`edgecrd init --ip` may have changed
// it while serve runs); if it cannot be read, what serve started with.
func (u *ui) device() *Device {
	cur, err := u.srv.current()
	if err != nil {
		u.log.Warn("ui: reading the device state", "err", err)
		return &u.srv.state.Device
	}
	return &cur.Device
}

// fail shows an error page with status.
func (u *ui) fail(w http.ResponseWriter, r *http.Request, sess *uiSession, status int, msg string) {
	v := view{Title: http.StatusText(status), Error: msg}
	if sess != nil {
		v = u.sessionView(sess, http.StatusText(status), "")
		v.Error = msg
	}
	u.render(w, status, "error", v)
}

func (u *ui) notFound(w http.ResponseWriter, r *http.Request, sess *uiSession) {
	u.fail(w, r, sess, http.StatusNotFound, fmt.Sprintf("There is no page at %s.", r.URL.Path))
}

// redirect sends the browser on after a POST, with a one-time notice.
func (u *ui) redirect(w http.ResponseWriter, r *http.Request, sess *uiSession, to, notice string) {
	if notice != "" {
		u.sessions.setNotice(sess, notice)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// --- login ---

type loginData struct {
	Username string
	Next     string
}

// safeNext keeps a post-login target on this site: a path of this UI,
// never "//host", "/\\host" or a path browsers would turn into one by
// dropping control characters.
func safeNext(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return "/"
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" || u.User != nil ||
		!strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.HasPrefix(u.Path, "/login") {
		return "/"
	}
	return s
}

func (u *ui) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, state := u.sessions.lookup(r); state == sessionOK {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	v := view{Title: "Log in"}
	switch r.URL.Query().Get("expired") {
	case "":
	case "age":
		v.Notice = fmt.Sprintf("Your session ended %s after you logged in. Log in again.", fmtDuration(uiSessionMaxAge))
	default:
		v.Notice = fmt.Sprintf("Your session ended after %s without activity. Log in again.", fmtDuration(u.sessions.idle))
	}
	u.showLogin(w, http.StatusOK, v, loginData{Username: AdminUser, Next: safeNext(r.URL.Query().Get("next"))})
}

// showLogin renders the login form with a fresh double-submit token: the
// cookie and the hidden field must match on POST.
func (u *ui) showLogin(w http.ResponseWriter, status int, v view, d loginData) {
	tok := randomToken()
	setCookie(w, loginCookie, tok, 3600)
	v.CSRF = tok
	v.Data = d
	u.render(w, status, "login", v)
}

func (u *ui) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		u.showLogin(w, http.StatusBadRequest, view{Title: "Log in", Error: "The form could not be read: " + err.Error()}, loginData{Username: AdminUser})
		return
	}
	d := loginData{Username: strings.TrimSpace(r.PostForm.Get("username")), Next: safeNext(r.PostForm.Get("next"))}
	c, err := r.Cookie(loginCookie)
	if err != nil || !validCSRF(c.Value, r.PostForm.Get("csrf")) {
		u.log.Warn("ui login refused: missing or wrong CSRF token", "remote", remoteHost(r))
		u.showLogin(w, http.StatusForbidden, view{Title: "Log in",
			Error: "The login form is missing its security token or it is out of date. Nothing was sent; try again."}, d)
		return
	}
	// Credentials are checked before the throttle, as on the registry: the
	// UI is loopback-only by default, so every tunnelled login comes from
	// 127.0.0.1, and a throttle in front of the check let one wrong login
	// every few seconds keep the admin out. The admin password is a
	// generated 256-bit secret (edgecrd never takes a chosen one), which
	// no rate of guessing finds; failures spend the address's allowance,
	// and past it a wrong password gets 429 and is not logged one by one.
	role, err := u.srv.authn.Verify(d.Username, r.PostForm.Get("password"))
	if err == nil && role != RoleAdmin {
		err = errNotAdmin
	}
	if err != nil {
		reason := "wrong credentials"
		msg := "Wrong user name or password."
		switch {
		case errors.Is(err, errNotAdmin):
			reason, msg = "not admin", "This account may use the registry but not the device UI: log in as "+AdminUser+"."
		case errors.Is(err, ErrRevoked):
			reason = "revoked"
		case !errors.Is(err, ErrUnknownUser) && !errors.Is(err, ErrBadSecret):
			// The device's fault, not the user's: no attempt spent, and
			// no path of the device shown before login.
			u.log.Error("ui login: checking credentials", "err", err)
			u.showLogin(w, http.StatusInternalServerError, view{Title: "Log in",
				Error: "The device could not check the credentials; its log says why."}, d)
			return
		}
		if ok, wait := u.limiter.take(remoteHost(r), u.srv.opts.Now()); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
			u.showLogin(w, http.StatusTooManyRequests, view{Title: "Log in",
				Error: fmt.Sprintf("Too many failed logins from your address. Try again in %s.", fmtDuration(wait.Round(time.Second)+time.Second))}, d)
			return
		}
		u.log.Warn("ui login failed", "user", d.Username, "reason", reason, "remote", remoteHost(r))
		u.showLogin(w, http.StatusUnauthorized, view{Title: "Log in", Error: msg}, d)
		return
	}
	if old, state := u.sessions.lookup(r); state == sessionOK {
		u.sessions.end(old) // a login replaces the browser's session
	}
	_, value := u.sessions.create(d.Username)
	setCookie(w, sessionCookie, value, 0)
	setCookie(w, loginCookie, "", -1)
	u.log.Info("ui login", "user", d.Username, "remote", remoteHost(r))
	http.Redirect(w, r, d.Next, http.StatusSeeOther)
}

var errNotAdmin = errors.New("not the admin identity")

func (u *ui) logout(w http.ResponseWriter, r *http.Request, sess *uiSession) {
	u.sessions.end(sess)
	setCookie(w, sessionCookie, "", -1)
	u.log.Info("ui logout", "user", sess.user, "remote", remoteHost(r))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// --- device ---

type deviceData struct {
	Version       string
	Uptime        string
	Started       time.Time
	CAFingerprint string
	Used          int64
	Quota         int64
	QuotaPercent  float64
	QuotaLow      int64 // 75% and 90% of the quota: the meter's colours
	QuotaHigh     int64
	LastGC        *GCSummary
	NextGC        *time.Time
	GCSchedule    string
	Clients       int
	Tokens        int
	JoinURL       string
}

func (u *ui) devicePage(w http.ResponseWriter, r *http.Request, sess *uiSession) {
	s := u.srv
	now := s.opts.Now()
	d := deviceData{
		Version:       s.opts.Version,
		Started:       u.started,
		Uptime:        fmtDuration(now.Sub(u.started).Truncate(time.Second)),
		CAFingerprint: s.state.CA.Fingerprint(),
		Used:          s.usage.used(),
		Quota:         s.usage.quota,
		GCSchedule:    s.opts.GCSchedule.String(),
	}
	if d.Quota > 0 {
		d.QuotaPercent = percent(d.Used, d.Quota)
		d.QuotaLow, d.QuotaHigh = d.Quota*3/4, d.Quota*9/10
	}
	if !s.opts.GCSchedule.Off() {
		n := s.opts.GCSchedule.Next(now)
		d.NextGC = &n
	}
	v := u.sessionView(sess, "Device", "device")
	d.JoinURL = v.Device.JoinURL()
	_, v.Notice = u.sessions.takeFlash(sess)
	var errs []string
	if last, err := s.state.LastGC(); err != nil {
		errs = append(errs, err.Error())
	} else {
		d.LastGC = last
	}
	if cl, err := s.state.Clients(); err != nil {
		errs = append(errs, err.Error())
	} else {
		for _, c := range cl {
			if !c.Revoked {
				d.Clients++
			}
		}
	}
	if tks, err := s.state.Tokens(); err != nil {
		errs = append(errs, err.Error())
	} else {
		for _, t := range tks {
			if t.State(now) == "valid" {
				d.Tokens++
			}
		}
	}
	v.Error = strings.Join(errs, "; ")
	v.Data = d
	u.render(w, http.StatusOK, "device", v)
}

// --- certificates ---

type certData struct {
	Subject     string
	NotBefore   time.Time
	NotAfter    time.Time
	Fingerprint string
	Host        string
	FileBase    string    // name of the downloads without extension
	ServerUntil time.Time // the serving certificate's expiry
	ServerNames []string
}

func (u *ui) certificatesPage(w http.ResponseWriter, r *http.Request, sess *uiSession) {
	ca := u.srv.state.CA.Cert
	v := u.sessionView(sess, "Certificates", "certificates")
	d := certData{Subject: ca.Subject.CommonName, NotBefore: ca.NotBefore, NotAfter: ca.NotAfter,
		Fingerprint: u.srv.state.CA.Fingerprint(), Host: v.Device.Host, FileBase: caFileBase(v.Device)}
	if leaf := u.srv.cert.Load().Leaf; leaf != nil {
		d.ServerUntil = leaf.NotAfter
		d.ServerNames = leaf.DNSNames
		for _, ip := range leaf.IPAddresses {
			d.ServerNames = append(d.ServerNames, ip.String())
		}
	}
	v.Data = d
	u.render(w, http.StatusOK, "certificates", v)
}

func caFileBase(d *Device) string { return "edgecr-" + d.Name + "-ca" }

// certificateFile downloads the device CA: ca.pem for Linux, macOS and
// tools, ca.crt (DER) for the Windows certificate import wizard.
func (u *ui) certificateFile(w http.ResponseWriter, r *http.Request, sess *uiSession) {
	ca := u.srv.state.CA.Cert
	base := caFileBase(u.device())
	attach := func(name string) string {
		return mime.FormatMediaType("attachment", map[string]string{"filename": name})
	}
	switch r.PathValue("file") {
	case "ca.pem":
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Header().Set("Content-Disposition", attach(base+".pem"))
		w.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}))
	case "ca.crt":
		w.Header().Set("Content-Type", "application/pkix-cert")
		w.Header().Set("Content-Disposition", attach(base+".crt"))
		w.Write(ca.Raw)
	default:
		u.notFound(w, r, sess)
	}
}

// --- clients ---

func (u *ui) clientsPage(w http.ResponseWriter, r *http.Request, sess *uiSession) {
	v := u.sessionView(sess, "Clients", "clients")
	_, v.Notice = u.sessions.takeFlash(sess)
	cl, err := u.clients()
	if err != nil {
		v.Error = "Reading the clients: " + err.Error()
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	rows, matched := SelectClients(cl, ClientQuery{Name: q, Limit: clientsPageRows})
	v.Data = clientsView{Rows: rows, Matched: matched, Total: len(cl), Q: q}
	u.render(w, http.StatusOK, "clients", v)
}

// clientsPageRows is how many clients the Clients page shows: the most
// recently seen (a fleet of thousands is searched, not scrolled).
const clientsPageRows = 200

type clientsView struct {
	Rows           []ClientInfo
	Matched, Total int
	Q              string
}

// clients lists the clients with the last-seen times this server holds
// (the file has them only every 15 s).
func (u *ui) clients() ([]ClientInfo, error) {
	cl, err := u.srv.state.Clients()
	if err != nil {
		return nil, err
	}
	seen := u.srv.seen.snapshot()
	for i := range cl {
		if t, ok := seen[cl[i].ID]; ok && (cl[i].LastSeen == nil || t.After(*cl[i].LastSeen)) {
			cl[i].LastSeen = &t
		}
	}
	return cl, nil
}

func (u *ui) findClient(id string) (*ClientInfo, error) {
	cl, err := u.clients()
	if err != nil {
		return nil, err
	}
	for i := range cl {
		if cl[i].ID == id {
			return &cl[i], nil
		}
	}
	return nil, nil
}

func (u *ui) revokeConfirm(w http.ResponseWriter, r *http.Request, sess *uiSession) {
	c, err := u.findClient(r.PathValue("id"))
	switch {
	case err != nil:
		u.fail(w, r, sess, http.StatusInternalServerError, "Reading the clients: "+err.Error())
	case c == nil:
		u.fail(w, r, sess, http.StatusNotFound, fmt.Sprintf("There is no client %q.", r.PathValue("id")))
	case c.Revoked:
		u.redirect(w, r, sess, "/clients", fmt.Sprintf("Client %s was already revoked.", c.Name))
	default:
		v := u.sessionView(sess, "Revoke "+c.Name, "clients")
		v.Data = c
		u.render(w, http.StatusOK, "revoke", v)
	}
}

func (u *ui) revoke(w http.ResponseWriter, r *http.Request, sess *uiSession) {
	id := r.PathValue("id")
	c, err := u.findClient(id)
	if err == nil && c == nil {
		u.fail(w, r, sess, http.StatusNotFound, fmt.Sprintf("There is no client %q.", id))
		return
	}
	if err == nil {
		err = u.srv.state.RevokeClient(id, u.srv.opts.Now())
	}
	if err != nil {
		u.fail(w, r, sess, http.StatusInternalServerError, "Revoking the client: "+err.Error())
		return
	}
	u.log.Info("ui: client revoked", "client", id, "name", c.Name, "user", sess.user)
	u.redirect(w, r, sess, "/clients", fmt.Sprintf("Client %s (%s) is revoked: the registry refuses its credential from its next request on.", c.Name, id))
}

// --- tokens ---

type tokenRow struct {
	*Token
	State string
}

type tokensData struct {
	Tokens  []tokenRow
	Created *tokenFlash
	Form    tokenForm
	Errors  map[string]string
	Install bool // the device serves agent binaries, so install lines work
	// Unreadable: the token list could not be read (no empty state then).
	Unreadable bool
}

type tokenForm struct {
	TTL  string
	Uses string
	Role string
}

func (u *ui) tokensView(sess *uiSession, f tokenForm, errs map[string]string) (view, error) {
	v := u.sessionView(sess, "Join tokens", "tokens")
	tks, err := u.srv.state.Tokens()
	d := tokensData{Form: f, Errors: errs, Install: u.installLines(), Unreadable: err != nil}
	now := u.srv.opts.Now()
	for i := len(tks) - 1; i >= 0; i-- { // newest first
		d.Tokens = append(d.Tokens, tokenRow{tks[i], tks[i].State(now)})
	}
	v.Data = &d
	return v, err
}

func (u *ui) tokensPage(w http.ResponseWriter, r *http.Request, sess *uiSession) {
	v, err := u.tokensView(sess, tokenForm{TTL: "24h", Uses: "1", Role: string(RolePush)}, nil)
	if err != nil {
		v.Error = "Reading the tokens: " + err.Error()
	}
	flash, notice := u.sessions.takeFlash(sess)
	v.Notice = notice
	// The token itself is shown once: on the page the creating POST
	// redirects to, and never again (it is not stored on the device).
	if flash != nil && r.URL.Query().Get("created") == flash.ID {
		v.Data.(*tokensData).Created = flash
	}
	u.render(w, http.StatusOK, "tokens", v)
}

// installLines says whether the device serves the agent binaries, which
// the one-line installs fetch.
func (u *ui) installLines() bool { return u.srv.dist != nil && len(u.srv.dist.files) > 0 }

// parseTTL reads a duration as Go writes it, plus days ("7d").
func parseTTL(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 {
			return 0, fmt.Errorf("%q is not a duration: use e.g. 30m, 24h or 7d", s)
		}
		if days > int(maxTokenTTL/(24*time.Hour)) {
			return 0, fmt.Errorf("%q is too long: at most %dd", s, maxTokenTTL/(24*time.Hour))
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: use e.g. 30m, 24h or 7d", s)
	}
	return d, nil
}

const maxTokenTTL = 365 * 24 * time.Hour

func (u *ui) createToken(w http.ResponseWriter, r *http.Request, sess *uiSession) {
	f := tokenForm{TTL: r.PostForm.Get("ttl"), Uses: r.PostForm.Get("uses"), Role: r.PostForm.Get("role")}
	errs := map[string]string{}
	ttl, err := parseTTL(f.TTL)
	switch {
	case err != nil:
		errs["ttl"] = err.Error()
	case ttl < time.Minute || ttl > maxTokenTTL:
		errs["ttl"] = "Between 1m and 365d."
	}
	uses, err := strconv.Atoi(strings.TrimSpace(f.Uses))
	if err != nil || uses < 1 || uses > 1000 {
		errs["uses"] = "A whole number from 1 to 1000."
	}
	role := Role(f.Role)
	if role != RolePush && role != RolePull {
		errs["role"] = "Choose push or pull."
	}
	if len(errs) > 0 {
		v, _ := u.tokensView(sess, f, errs)
		v.Error = "The token was not created: correct the fields marked below."
		u.render(w, http.StatusBadRequest, "tokens", v)
		return
	}
	tk, token, err := u.srv.state.CreateToken(TokenOptions{TTL: ttl, Uses: uses, Role: role}, u.srv.opts.Now())
	if err != nil {
		v, _ := u.tokensView(sess, f, nil)
		v.Error = "Creating the token: " + err.Error()
		u.render(w, http.StatusInternalServerError, "tokens", v)
		return
	}
	// The lines name the device as it is now and pin the key being served.
	var served *x509.Certificate
	if u.installLines() {
		served = u.srv.cert.Load().Leaf
	}
	jc := joinCommands(u.device(), token, served)
	u.log.Info("ui: join token created", "token", tk.ID, "role", tk.Role, "uses", tk.Uses, "expires", tk.Expires, "user", sess.user)
	u.sessions.setFlash(sess, &tokenFlash{ID: tk.ID, Token: token, Commands: jc, Role: tk.Role, Uses: tk.Uses, Expires: tk.Expires})
	http.Redirect(w, r, "/tokens?created="+tk.ID, http.StatusSeeOther)
}

func (u *ui) deleteToken(w http.ResponseWriter, r *http.Request, sess *uiSession) {
	id := r.PathValue("id")
	if err := u.srv.state.RemoveToken(id); err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, ErrNoSuchToken) {
			status = http.StatusNotFound
		}
		u.fail(w, r, sess, status, "Removing the token: "+err.Error())
		return
	}
	u.log.Info("ui: join token removed", "token", id, "user", sess.user)
	u.redirect(w, r, sess, "/tokens", fmt.Sprintf("Token %s is removed; clients that joined with it stay.", id))
}

// --- images ---

type imagesData struct {
	imagePage
	Q        string
	Endpoint string
	// AsOf, Took and Refreshing say how fresh the list is (imageindex.go).
	AsOf       time.Time
	Took       time.Duration
	Refreshing bool
	// Prev and Next are the other pages' links, "" at an end.
	Prev, Next string
}

// imagesPage shows a page of repositories (imagesPerPage, by name) from
// the image index, found with ?q=REPO or REPO:TAG, ?page=N.
func (u *ui) imagesPage(w http.ResponseWriter, r *http.Request, sess *uiSession) {
	v := u.sessionView(sess, "Images", "images")
	_, v.Notice = u.sessions.takeFlash(sess)
	d := imagesData{Endpoint: v.Device.Endpoint(), Q: strings.TrimSpace(r.URL.Query().Get("q"))}
	q, err := parseImageSearch(d.Q)
	page := 1
	if err == nil {
		if p := r.URL.Query().Get("page"); p != "" {
			if page, err = strconv.Atoi(p); err != nil || page < 1 || page > 1_000_000 {
				err = fmt.Errorf("invalid page %q: a number from 1", p)
			}
		}
	}
	if err != nil {
		v.Error = err.Error()
		v.Data = d
		u.render(w, http.StatusBadRequest, "images", v)
		return
	}
	snap, err := u.srv.imgIndex.view(r.Context())
	if err != nil {
		v.Error = "Reading the images: " + err.Error()
		v.Data = d
		u.render(w, http.StatusOK, "images", v)
		return
	}
	d.imagePage = selectImages(snap.Repos, q, page, imagesPerPage)
	d.AsOf, d.Took, d.Refreshing = snap.AsOf, snap.Took, snap.Refreshing
	link := func(p int) string {
		vals := url.Values{}
		if d.Q != "" {
			vals.Set("q", d.Q)
		}
		vals.Set("page", strconv.Itoa(p))
		return "/images?" + vals.Encode()
	}
	if d.Page > 1 {
		d.Prev = link(d.Page - 1)
	}
	if d.Page < d.Pages {
		d.Next = link(d.Page + 1)
	}
	v.Data = d
	u.render(w, http.StatusOK, "images", v)
}

type deleteTagData struct {
	Repo string
	Tag  ImageTag
}

func (u *ui) deleteTagConfirm(w http.ResponseWriter, r *http.Request, sess *uiSession) {
	repo, tag := r.URL.Query().Get("repo"), r.URL.Query().Get("tag")
	t, err := u.srv.state.ImageTagOf(r.Context(), repo, tag)
	switch {
	case errors.Is(err, ErrTagNotFound):
		u.fail(w, r, sess, http.StatusNotFound, fmt.Sprintf("There is no tag %s:%s.", repo, tag))
	case errors.Is(err, ErrInvalidName):
		u.fail(w, r, sess, http.StatusBadRequest, err.Error())
	case err != nil:
		u.fail(w, r, sess, http.StatusInternalServerError, "Reading the images: "+err.Error())
	default:
		v := u.sessionView(sess, "Delete "+repo+":"+tag, "images")
		v.Data = deleteTagData{Repo: repo, Tag: *t}
		u.render(w, http.StatusOK, "deletetag", v)
	}
}

func (u *ui) deleteTag(w http.ResponseWriter, r *http.Request, sess *uiSession) {
	repo, tag, digest := r.PostForm.Get("repo"), r.PostForm.Get("tag"), r.PostForm.Get("digest")
	// The digest the confirmation showed: a push since then moved the tag
	// to an image the user did not agree to untag.
	if err := u.srv.state.DeleteTagAt(r.Context(), repo, tag, digest); err != nil {
		status := http.StatusInternalServerError
		switch {
		case errors.Is(err, ErrTagNotFound):
			status = http.StatusNotFound
		case errors.Is(err, ErrInvalidName):
			status = http.StatusBadRequest
		case errors.Is(err, ErrTagMoved):
			status = http.StatusConflict
			err = fmt.Errorf("%w: nothing was deleted; look at the tag again before deleting it", err)
		}
		u.fail(w, r, sess, status, err.Error())
		return
	}
	u.srv.imgIndex.changedRepo(repo)
	u.log.Info("ui: tag deleted", "repo", repo, "tag", tag, "user", sess.user)
	after := "Its content stays on disk for other tags and digest references; scheduled garbage collection keeps untagged images (edgecrd gc --delete-untagged removes them)."
	if u.srv.opts.GCDeleteUntagged {
		after = "Its content stays on disk while other tags use it; the next garbage collection removes it otherwise."
	}
	u.redirect(w, r, sess, "/images", fmt.Sprintf("Deleted %s:%s. %s", repo, tag, after))
}

// --- formatting ---

// mediaKind names a manifest media type for people.
func mediaKind(mt string) string {
	switch mt {
	case "application/vnd.docker.distribution.manifest.v2+json":
		return "Docker image"
	case "application/vnd.oci.image.manifest.v1+json":
		return "OCI image"
	case "application/vnd.oci.image.index.v1+json":
		return "OCI index"
	case "application/vnd.docker.distribution.manifest.list.v2+json":
		return "Docker manifest list"
	case "":
		return "unknown"
	}
	return mt
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

// fmtPercent shows small shares with a decimal: 0.4%, 12%.
func fmtPercent(p float64) string {
	if p < 10 {
		return strconv.FormatFloat(p, 'f', 1, 64) + "%"
	}
	return strconv.FormatFloat(p, 'f', 0, 64) + "%"
}

func percent(used, quota int64) float64 {
	if quota <= 0 {
		return 0
	}
	p := float64(used) * 100 / float64(quota)
	return min(p, 100)
}

// fmtDuration is a short human duration: 45s, 12m, 3h 5m, 2d 4h.
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		h := int(d.Hours())
		if m := int(d.Minutes()) % 60; m != 0 {
			return fmt.Sprintf("%dh %dm", h, m)
		}
		return fmt.Sprintf("%dh", h)
	default:
		days := int(d.Hours()) / 24
		if h := int(d.Hours()) % 24; h != 0 {
			return fmt.Sprintf("%dd %dh", days, h)
		}
		return fmt.Sprintf("%dd", days)
	}
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 5*time.Second {
		return "just now"
	}
	if d < 0 {
		return "in " + fmtDuration(-d)
	}
	return fmtDuration(d) + " ago"
}

func until(now, t time.Time) string {
	d := t.Sub(now)
	if d <= 0 {
		return fmtDuration(-d) + " ago"
	}
	return "in " + fmtDuration(d)
}
