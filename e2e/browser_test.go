package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/edgecr/edgecr/e2e/testenv"
)

// chromium finds Debian's chromium (or another Chrome) for the browser
// tests.
func chromium(t *testing.T) string {
	t.Helper()
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	testenv.Need(t, false, "no chromium on PATH: the web UI tests drive a real browser (apt-get install chromium)")
	return ""
}

// tab is one browser tab driven by a test. Console errors, uncaught
// exceptions and browser log errors (a CSP violation among them) are
// collected and fail the test at its end.
type tab struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string
}

// newBrowser starts a headless chromium that accepts exactly the given
// server keys (base64 SHA-256 of the SubjectPublicKeyInfo) and resolves no
// name but loopback, so that nothing leaves this machine.
func newBrowser(t *testing.T, spki ...string) context.Context {
	t.Helper()
	exe := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Headless,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(spki, ",")),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("disable-features", "OptimizationHints,MediaRouter,Translate,AutofillServerCommunication"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("font-render-hinting", "none"),
	}
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // chromium refuses to sandbox as root
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// Start the browser now: tabs get browser contexts of their own.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting %s: %v", exe, err)
	}
	return bctx
}

// newTab opens a tab in a browser context of its own (its own cookies).
func newTab(t *testing.T, bctx context.Context) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
	ctx, cancelTimeout := context.WithTimeout(ctx, 4*time.Minute)
	tb := &tab{t: t, ctx: ctx}
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
	})
	if err := chromedp.Listen(ctx, tb.observe); err != nil {
		t.Fatalf("starting the browser: %v", err)
	}
	if _, err := chromedp.Call(ctx, log.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enabling the browser log: %v", err)
	}
	if _, err := chromedp.Call(ctx, runtime.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enabling the runtime domain: %v", err)
	}
	t.Cleanup(func() {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, p := range tb.problems {
			t.Errorf("browser reported: %s", p)
		}
	})
	return tb
}

func (tb *tab) observe(ev any) {
	var p string
	switch e := ev.(type) {
	case *runtime.EventExceptionThrown:
		p = "uncaught exception: " + e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil && e.ExceptionDetails.Exception.Description != "" {
			p += ": " + e.ExceptionDetails.Exception.Description
		}
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError {
			p = "console.error"
		}
	case *log.EventEntryAdded:
		// Error pages the tests provoke on purpose (403, 401, 404) are
		// logged as failed resources; anything else at error level is a
		// problem: a CSP violation, a missing asset, a script error.
		if e.Entry.Level == log.EntryLevelError && !strings.Contains(e.Entry.Text, "Failed to load resource: the server responded with a status of 40") {
			p = fmt.Sprintf("%s: %s (%s)", e.Entry.Source, e.Entry.Text, e.Entry.URL)
		}
	}
	if p != "" {
		tb.mu.Lock()
		tb.problems = append(tb.problems, p)
		tb.mu.Unlock()
	}
}

// step bounds one browser step, so that a page that never comes fails
// fast, naming the step.
func (tb *tab) step() (context.Context, context.CancelFunc) {
	return context.WithTimeout(tb.ctx, 30*time.Second)
}

// do runs actions and fails the test on error, saying what it was doing.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := tb.step()
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %v (at %s)", what, err, tb.location())
	}
}

// nav runs actions that load a page and returns its HTTP status (the
// final one, after redirects).
func (tb *tab) nav(what string, actions ...chromedp.Action[chromedp.Void]) int {
	tb.t.Helper()
	ctx, cancel := tb.step()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, actions...)
	if err != nil {
		tb.t.Fatalf("%s: %v (at %s)", what, err, tb.location())
	}
	if resp == nil {
		tb.t.Fatalf("%s: no page was loaded", what)
	}
	return int(resp.Status)
}

func (tb *tab) location() string {
	ctx, cancel := tb.step()
	defer cancel()
	l, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "?"
	}
	return l
}

func (tb *tab) text(sel string) string {
	tb.t.Helper()
	ctx, cancel := tb.step()
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		tb.t.Fatalf("reading %s: %v (at %s)", sel, err, tb.location())
	}
	return strings.TrimSpace(s)
}

func (tb *tab) value(sel string) string {
	tb.t.Helper()
	ctx, cancel := tb.step()
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS(sel)))
	if err != nil {
		tb.t.Fatalf("reading the value of %s: %v (at %s)", sel, err, tb.location())
	}
	return s
}

func (tb *tab) eval(js string) string {
	tb.t.Helper()
	ctx, cancel := tb.step()
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		tb.t.Fatalf("evaluating %s: %v", js, err)
	}
	return s
}

// count is how many elements match sel now.
func (tb *tab) count(sel string) int {
	tb.t.Helper()
	ctx, cancel := tb.step()
	defer cancel()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
	if err != nil {
		tb.t.Fatalf("counting %s: %v", sel, err)
	}
	return n
}

// Screenshot widths: a laptop and a phone (iPhone 12–15).
var shotSizes = []struct {
	w, h   int64
	mobile bool
}{{1280, 800, false}, {390, 844, true}}

// shoot saves a full-page PNG of the current page at both widths into the
// artefact directory, for a person to look at.
func (tb *tab) shoot(dir, name string) {
	tb.t.Helper()
	for _, s := range shotSizes {
		var opts []chromedp.EmulateViewportOption
		if s.mobile {
			opts = append(opts, chromedp.EmulateScale(1), chromedp.EmulateMobile)
		}
		tb.do("resizing to "+fmt.Sprint(s.w), chromedp.EmulateViewport(s.w, s.h, opts...), chromedp.Sleep(150*time.Millisecond))
		ctx, cancel := tb.step()
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			tb.t.Fatalf("screenshot %s at %d px: %v", name, s.w, err)
		}
		p := filepath.Join(dir, fmt.Sprintf("%s-%d.png", name, s.w))
		if err := os.WriteFile(p, png, 0o644); err != nil {
			tb.t.Fatalf("saving screenshot: %v", err)
		}
	}
	tb.do("restoring the viewport", chromedp.EmulateViewport(shotSizes[0].w, shotSizes[0].h))
}

// download clicks sel and returns the bytes of the file the browser saved.
func (tb *tab) download(sel string) []byte {
	tb.t.Helper()
	dir := tb.t.TempDir()
	if _, err := chromedp.CallBrowser(tb.ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: ptr(true),
		BrowserContextID: chromedp.FromContext(tb.ctx).BrowserContextID,
	}); err != nil {
		tb.t.Fatalf("allowing downloads: %v", err)
	}
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	progress := chromedp.BrowserEvents(ctx, browser.DownloadProgress)
	tb.do("clicking "+sel, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
	for ev, err := range progress {
		if err != nil {
			tb.t.Fatalf("waiting for the download of %s: %v", sel, err)
		}
		switch ev.State {
		case browser.DownloadProgressStateCompleted:
			b, err := os.ReadFile(filepath.Join(dir, ev.GUID))
			if err != nil {
				tb.t.Fatalf("reading the downloaded file: %v", err)
			}
			return b
		case browser.DownloadProgressStateCanceled:
			tb.t.Fatalf("the download of %s was cancelled", sel)
		}
	}
	tb.t.Fatalf("the download of %s did not complete", sel)
	return nil
}

// allowClipboard lets origin's pages read and write the clipboard, as a
// person allows it once.
func (tb *tab) allowClipboard(origin string) {
	tb.t.Helper()
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(tb.ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: name}, Setting: browser.PermissionSettingGranted,
			Origin: origin, BrowserContextID: chromedp.FromContext(tb.ctx).BrowserContextID,
		}); err != nil {
			tb.t.Fatalf("granting %s: %v", name, err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// artifactDir is where screenshots go: $EDGECR_ARTIFACTS/webui, or
// e2e/artifacts/webui (ignored by git).
func artifactDir(t *testing.T, name string) string {
	t.Helper()
	base := os.Getenv("EDGECR_ARTIFACTS")
	if base == "" {
		base = "artifacts"
	}
	dir, err := filepath.Abs(filepath.Join(base, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("creating the artefact dir: %v", err)
	}
	return dir
}

// spkiOf is the base64 SHA-256 of the device's serving key, what
// --ignore-certificate-errors-spki-list takes.
func spkiOf(t *testing.T, d *device) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.dataDir, "server.crt"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("server.crt holds no PEM block")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("parsing server.crt: %v", err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}
