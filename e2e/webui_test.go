package e2e

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/edgecr/edgecr/internal/ocitest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// tokenCount is how many join tokens the device holds.
func (d *device) tokenCount(t *testing.T) int {
	t.Helper()
	out, e, err := edgecrd(t, "token", "ls", "--data-dir", d.dataDir, "-o", "json")
	if err != nil {
		t.Fatalf("token ls: %v\n%s", err, e)
	}
	var rows []json.RawMessage
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("token ls -o json: %v\n%s", err, out)
	}
	return len(rows)
}

// login logs the tab in to d's web UI with password and returns the
// status of the page it lands on.
func (tb *tab) login(d *device, password string) int {
	tb.t.Helper()
	tb.nav("opening the login page", chromedp.Navigate(d.uiURL+"login"))
	return tb.nav("logging in",
		chromedp.SetValue(chromedp.CSS("#password"), password, chromedp.NodeVisible),
		chromedp.Click(chromedp.CSS("#login-submit")))
}

// TestWebUI drives the device's web UI in Debian's chromium, as an admin
// would: log in, create a join token, join a sandboxed client with it,
// find and revoke the client, download the CA, delete a tag; and the
// refusals: a wrong password, a form without its CSRF token, a session
// that expired. Every page is saved as a screenshot at 1280 and 390 px.
func TestWebUI(t *testing.T) {
	chromium(t) // fails here without chromium in CI, skips elsewhere
	d := startDevice(t, "", "--quota", "20MB")
	// A second device logs sessions out after a minute idle; the test
	// logs in there first and comes back at the end.
	idle := startDevice(t, "", "--ui-idle-timeout", "1m")
	if d.uiURL == "" || idle.uiURL == "" {
		t.Fatalf("serve did not print its web UI address:\n%s", d.stdout)
	}
	actx := newBrowser(t, spkiOf(t, d), spkiOf(t, idle))
	shots := artifactDir(t, "webui")

	// The UI is HTTPS with the device's own certificate.
	conn, err := tls.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(d.uiURL, "https://"), "/"),
		&tls.Config{RootCAs: d.caPool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("the web UI's certificate does not verify against the device CA: %v", err)
	}
	conn.Close()

	expiring := newTab(t, actx)
	if st := expiring.login(idle, idle.info.Password); st != http.StatusOK {
		t.Fatalf("login on the idle-timeout device: status %d", st)
	}
	expiring.nav("opening the tokens page", chromedp.Navigate(idle.uiURL+"tokens"))
	lastUse := time.Now()

	b := newTab(t, actx)

	// Without a session every page leads to the login page.
	for _, p := range []string{"", "certificates", "clients", "tokens", "images"} {
		b.nav("opening /"+p, chromedp.Navigate(d.uiURL+p))
		if loc := b.location(); !strings.HasPrefix(loc, d.uiURL+"login") {
			t.Errorf("/%s without a session: at %s, want the login page", p, loc)
		}
	}
	b.nav("opening the login page", chromedp.Navigate(d.uiURL+"login"))
	b.shoot(shots, "01-login")

	// 4. A wrong password is refused.
	if st := b.login(d, "not-the-password"); st != http.StatusUnauthorized {
		t.Errorf("wrong password: status %d, want 401", st)
	}
	if e := b.text("#error"); !strings.Contains(e, "Wrong user name or password") {
		t.Errorf("wrong password: error %q", e)
	}
	b.shoot(shots, "02-login-wrong-password")
	if loc := b.location(); !strings.HasSuffix(loc, "/login") {
		t.Errorf("after a wrong password the browser is at %s", loc)
	}

	if st := b.login(d, d.info.Password); st != http.StatusOK {
		t.Fatalf("login: status %d", st)
	}
	if got := b.text("#endpoint"); got != d.info.Endpoint {
		t.Errorf("device page endpoint %q, want %q", got, d.info.Endpoint)
	}
	if got := b.text("#fingerprint"); got != d.info.CAFingerprint {
		t.Errorf("device page fingerprint %q, want %q", got, d.info.CAFingerprint)
	}
	b.nav("opening the clients page", chromedp.Navigate(d.uiURL+"clients"))
	if !strings.Contains(b.text("#empty"), "No client has joined yet") {
		t.Errorf("clients page without clients shows no empty state")
	}
	b.shoot(shots, "03-clients-empty")
	b.nav("opening the images page", chromedp.Navigate(d.uiURL+"images"))
	if !strings.Contains(b.text("#empty"), "No images yet") {
		t.Errorf("images page without images shows no empty state")
	}
	b.shoot(shots, "04-images-empty")

	// 1. Create a token in the page.
	b.nav("opening the tokens page", chromedp.Navigate(d.uiURL+"tokens"))
	b.shoot(shots, "05-tokens-empty")
	// An invalid form keeps what was typed and says what is wrong.
	st := b.nav("submitting a bad token form",
		chromedp.SetValue(chromedp.CSS("#ttl"), "forever", chromedp.NodeVisible),
		chromedp.SetValue(chromedp.CSS("#uses"), "0"),
		chromedp.Click(chromedp.CSS("#create-token-submit")))
	if st != http.StatusBadRequest || b.value("#ttl") != "forever" || b.count(`[aria-invalid="true"]`) != 2 {
		t.Errorf("bad token form: status %d, ttl %q, %d fields marked", st, b.value("#ttl"), b.count(`[aria-invalid="true"]`))
	}
	b.shoot(shots, "06-tokens-invalid")
	if n := d.tokenCount(t); n != 0 {
		t.Fatalf("a bad form created %d token(s)", n)
	}
	b.nav("creating a token",
		chromedp.SetValue(chromedp.CSS("#ttl"), "1h"),
		chromedp.SetValue(chromedp.CSS("#uses"), "1"),
		chromedp.SetValue(chromedp.CSS("#role"), "push"),
		chromedp.Click(chromedp.CSS("#create-token-submit")))
	cmdLine := b.value("#join-command")
	fields := strings.Fields(strings.TrimPrefix(cmdLine, sudoUnlessRoot+" "))
	wantURL := "https://" + d.info.IPAddress + ":" + d.addr[strings.LastIndexByte(d.addr, ':')+1:]
	if len(fields) != 5 || fields[0] != "edgecr" || fields[1] != "join" || fields[2] != wantURL || fields[3] != "--token" || !strings.HasPrefix(fields[4], "edgecr1.") {
		t.Fatalf("join command %q, want edgecr join %s --token edgecr1.…", cmdLine, wantURL)
	}
	token := fields[4]
	// The copy button puts the command on the clipboard.
	b.allowClipboard(strings.TrimSuffix(d.uiURL, "/"))
	b.do("clicking the copy button", chromedp.Click(chromedp.CSS("#copy-join-command")))
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](`document.querySelector("#copy-join-command").textContent === "Copied"`,
		chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		t.Errorf("copy button says %q after a click, want Copied: %v", b.text("#copy-join-command"), err)
	}
	if clip, err := chromedp.Run(b.ctx, chromedp.Evaluate[string]("navigator.clipboard.readText()", chromedp.EvalAwaitPromise)); err != nil || clip != cmdLine {
		t.Errorf("clipboard after copy: %q (%v), want %q", clip, err, cmdLine)
	}
	b.shoot(shots, "07-tokens-created")
	// Shown once: the same page again no longer has it.
	b.nav("reloading the tokens page", chromedp.Reload())
	if b.count("#join-command") != 0 || strings.Contains(b.eval("document.body.innerText"), token) {
		t.Errorf("the token is shown again after a reload")
	}

	// The test joins a sandboxed client with the token from the page.
	c := newClient(t)
	if out, err := c.edgecr("join", d.joinURL(), "--token", token, "--root", c.root, "--name", "webui-laptop"); err != nil {
		t.Fatalf("join with the token from the page: %v\n%s", err, out)
	}
	t.Setenv("DOCKER_CONFIG", c.dockerDir)
	t.Setenv("EDGECR_CONFIG_DIR", c.credDir)
	t.Setenv("PATH", filepath.Dir(bin.helper)+string(os.PathListSeparator)+os.Getenv("PATH"))
	img, err := random.Image(32<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	other, err := random.Image(16<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		ref string
		img v1.Image
	}{{"webui/app:v1", img}, {"webui/app:v2", img}, {"webui/tools:latest", other}} {
		if err := remote.Write(d.registryRef(t, p.ref), p.img, c.remote()...); err != nil {
			t.Fatalf("pushing %s as the joined client: %v", p.ref, err)
		}
	}

	idx, _, _ := ociIndex(t)
	if err := remote.WriteIndex(d.registryRef(t, "webui/multi:1.0"), idx, c.remote()...); err != nil {
		t.Fatalf("pushing an index as the joined client: %v", err)
	}
	if subject, err := ocitest.Descriptor(idx); err != nil {
		t.Fatal(err)
	} else {
		multi := d.registryRef(t, "webui/multi:1.0").Context()
		attachTo(t, multi, subject, e2eSigType, `{"signature":"webui"}`, c.remote())
		attachTo(t, multi, subject, e2eSBOMType, `{"spdxVersion":"SPDX-2.3"}`, c.remote())
	}

	// The client appears on the Clients page.
	b.nav("opening the clients page", chromedp.Navigate(d.uiURL+"clients"))
	row := `#clients tr[data-client]`
	if b.count(row) != 1 || !strings.Contains(b.text(row+" td.name"), "webui-laptop") {
		t.Fatalf("clients page: %d row(s): %q", b.count(row), b.eval("document.querySelector('#clients')?.innerText ?? ''"))
	}
	clientID := b.eval(`document.querySelector("#clients tr[data-client]").dataset.client`)
	if ls := b.text(row + " td.last-seen"); ls == "never" {
		// Last seen is flushed every 15 s; joining alone may not show yet.
		t.Logf("last seen not recorded yet: %q", ls)
	}
	b.shoot(shots, "08-clients")

	// 3. Delete a tag on the Images page.
	b.nav("opening the images page", chromedp.Navigate(d.uiURL+"images"))
	for _, ref := range []string{"webui/app:v1", "webui/app:v2", "webui/tools:latest", "webui/multi:1.0"} {
		if b.count(fmt.Sprintf(`tr[data-ref=%q]`, ref)) != 1 {
			t.Errorf("images page does not list %s", ref)
		}
	}
	if got := b.text(`tr[data-ref="webui/multi:1.0"] .referrers`); !strings.Contains(got, "2 referrer(s)") || !strings.Contains(got, e2eSBOMType) {
		t.Errorf("images page shows the referrers of webui/multi:1.0 as %q", got)
	}
	b.shoot(shots, "09-images")
	b.nav("asking to delete webui/app:v1", chromedp.Click(chromedp.CSS(`tr[data-ref="webui/app:v1"] a.delete`), chromedp.NodeVisible))
	if !strings.Contains(b.text("#confirm"), "webui/app:v1") {
		t.Fatalf("delete confirmation does not name the tag: %q", b.text("#confirm"))
	}
	b.shoot(shots, "10-images-delete-confirm")
	b.nav("confirming the deletion", chromedp.Click(chromedp.CSS("#confirm-submit")))
	if n := b.text("#notice"); !strings.Contains(n, "Deleted webui/app:v1") {
		t.Errorf("after deleting: notice %q", n)
	}
	if b.count(`tr[data-ref="webui/app:v1"]`) != 0 || b.count(`tr[data-ref="webui/app:v2"]`) != 1 {
		t.Errorf("after deleting v1 the page lists v1: %d, v2: %d", b.count(`tr[data-ref="webui/app:v1"]`), b.count(`tr[data-ref="webui/app:v2"]`))
	}
	b.shoot(shots, "11-images-after-delete")
	if typ := b.text(`tr[data-ref="webui/multi:1.0"] td[data-label="Type"]`); typ != "OCI index: linux/amd64, linux/arm64" {
		t.Errorf("index type shown as %q", typ)
	}
	tags := c.lsTags(d.info.Endpoint + "/webui/app")
	if _, ok := tags["v1"]; ok {
		t.Errorf("edgecr ls still shows v1 after the UI deleted it: %v", tags)
	}
	if _, ok := tags["v2"]; !ok {
		t.Errorf("edgecr ls lost v2, which the UI did not delete: %v", tags)
	}

	// 2. Download the CA from the Certificates page.
	b.nav("opening the certificates page", chromedp.Navigate(d.uiURL+"certificates"))
	b.shoot(shots, "12-certificates")
	shown := b.text("#fingerprint")
	caFile, err := os.ReadFile(d.info.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	gotPEM := b.download("#download-ca-pem")
	if string(gotPEM) != string(caFile) {
		t.Errorf("downloaded PEM (%d bytes) differs from the device CA file (%d bytes)", len(gotPEM), len(caFile))
	}
	gotDER := b.download("#download-ca-der")
	blk, _ := pem.Decode(caFile)
	if blk == nil || string(gotDER) != string(blk.Bytes) {
		t.Errorf("downloaded .crt (%d bytes) is not the CA's DER", len(gotDER))
	}
	sum := sha256.Sum256(gotDER)
	if want := "sha256:" + hex.EncodeToString(sum[:]); shown != want || shown != d.info.CAFingerprint {
		t.Errorf("fingerprint shown %s; sha256 of the download %s; edgecrd info %s", shown, want, d.info.CAFingerprint)
	}

	// 4. A form without its CSRF token changes nothing.
	tokensBefore := d.tokenCount(t)
	b.nav("opening the tokens page", chromedp.Navigate(d.uiURL+"tokens"))
	b.eval(`document.querySelector('#create-token input[name=csrf]').remove(); "removed"`)
	if st := b.nav("submitting without the CSRF token", chromedp.Click(chromedp.CSS("#create-token-submit"))); st != http.StatusForbidden {
		t.Errorf("token form without CSRF token: status %d, want 403", st)
	}
	if e := b.text("#error"); !strings.Contains(e, "security token") {
		t.Errorf("CSRF refusal says %q", e)
	}
	b.shoot(shots, "13-csrf-refused")
	b.nav("opening the tokens page", chromedp.Navigate(d.uiURL+"tokens"))
	b.do("changing the form's CSRF token", chromedp.SetValue(chromedp.CSS(`#create-token input[name=csrf]`), "forged"))
	if st := b.nav("submitting a forged CSRF token", chromedp.Click(chromedp.CSS("#create-token-submit"))); st != http.StatusForbidden {
		t.Errorf("token form with a forged CSRF token: status %d, want 403", st)
	}
	if n := d.tokenCount(t); n != tokensBefore {
		t.Errorf("refused forms created tokens: %d, before %d", n, tokensBefore)
	}

	// 1, continued. Revoke the client on the Clients page; its next
	// registry request is 401.
	ref := d.registryRef(t, "webui/app:v2")
	if _, err := remote.Head(ref, c.remote()...); err != nil {
		t.Fatalf("the client's credential before revocation: %v", err)
	}
	b.nav("opening the clients page", chromedp.Navigate(d.uiURL+"clients"))
	b.nav("asking to revoke", chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-client=%q] a.revoke`, clientID)), chromedp.NodeVisible))
	b.shoot(shots, "14-clients-revoke-confirm")
	b.nav("confirming the revocation", chromedp.Click(chromedp.CSS("#confirm-submit")))
	if n := b.text("#notice"); !strings.Contains(n, "revoked") {
		t.Errorf("after revoking: notice %q", n)
	}
	if s := b.text(fmt.Sprintf(`tr[data-client=%q] td.status`, clientID)); !strings.HasPrefix(s, "revoked") {
		t.Errorf("client status after revoking: %q", s)
	}
	b.shoot(shots, "15-clients-revoked")
	_, err = remote.Head(ref, c.remote()...)
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized {
		t.Errorf("the revoked client's next registry request: %v, want 401", err)
	}

	// The device page shows storage against the quota and the last GC.
	if out, e, err := edgecrd(t, "gc", "--data-dir", d.dataDir, "--delete-untagged", "--grace", "0s"); err != nil {
		t.Fatalf("edgecrd gc: %v\n%s%s", err, out, e)
	}
	b.nav("opening the device page", chromedp.Navigate(d.uiURL))
	if q := b.text("#quota"); !regexp.MustCompile(`^19\.1 MiB \(0\.\d% used\)$`).MatchString(q) {
		t.Errorf("device page quota %q", q)
	}
	if g := b.text("#last-gc"); !strings.Contains(g, "ago") && !strings.Contains(g, "just now") {
		t.Errorf("device page last GC %q after a collection", g)
	}
	b.shoot(shots, "16-device")
	b.nav("opening a page that does not exist", chromedp.Navigate(d.uiURL+"nope"))
	b.shoot(shots, "17-not-found")

	// Logging out ends the session.
	b.nav("logging out", chromedp.Click(chromedp.CSS("#logout")))
	b.nav("opening the clients page", chromedp.Navigate(d.uiURL+"clients"))
	if loc := b.location(); !strings.HasPrefix(loc, d.uiURL+"login") {
		t.Errorf("after logout /clients is at %s", loc)
	}

	// 4. An expired session is refused: the form posted after more than
	// the idle timeout does nothing and leads to the login page.
	if wait := time.Until(lastUse.Add(time.Minute + 2*time.Second)); wait > 0 {
		t.Logf("waiting %s for the session on the second device to expire", wait.Round(time.Second))
		time.Sleep(wait)
	}
	expiring.nav("submitting after the idle timeout", chromedp.Click(chromedp.CSS("#create-token-submit")))
	if loc := expiring.location(); !strings.Contains(loc, "/login?expired=1") {
		t.Errorf("after the idle timeout the form led to %s, want the login page", loc)
	}
	if n := expiring.text("#notice"); !strings.Contains(n, "session ended") {
		t.Errorf("login page after expiry says %q", n)
	}
	expiring.shoot(shots, "18-login-expired")
	if n := idle.tokenCount(t); n != 0 {
		t.Errorf("a form posted with an expired session created %d token(s)", n)
	}
	t.Logf("screenshots in %s", shots)
}
