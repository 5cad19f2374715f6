package server

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 10, smaller finding: a 401 must not tell an unknown user from a
// wrong password (which names exist); the log keeps the difference.
func TestUnauthorizedDoesNotTellUnknownUserFromWrongPassword(t *testing.T) {
	ts := startServer(t, nil)
	ts.addIdentity("alice", RolePull)
	unknown := readAll(t, ts.do("GET", "/v2/", "nobody", "x", nil, nil))
	wrong := readAll(t, ts.do("GET", "/v2/", "alice", "x", nil, nil))
	if unknown != wrong {
		t.Errorf("unknown user: %s\nwrong password: %s\nwant the same answer", unknown, wrong)
	}
	if logs := ts.logs.String(); !strings.Contains(logs, `"reason":"unknown user"`) || !strings.Contains(logs, `"reason":"wrong password"`) {
		t.Errorf("the log lost which failure it was:\n%s", logs)
	}
}

// Issue 10, smaller finding: distribution's error lines (it logs every
// 5xx with the request URI) must not carry an upload's _state, the signed
// token of the session.
func TestDistributionErrorLogsRedactUploadState(t *testing.T) {
	ts := startServer(t, nil)
	loc := ts.startUpload(t, "logs/a")
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	state := u.Query().Get("_state")
	if len(state) < 20 {
		t.Fatalf("upload location without a _state: %s", loc)
	}
	// The session's data file replaced by a directory: the write fails
	// inside distribution, which answers 500 and logs the URI.
	repo, id, _ := strings.Cut(strings.TrimPrefix(u.Path, "/v2/"), "/blobs/uploads/")
	data := filepath.Join(osPath(ts.state.StorageDir(), uploadsDir(repo)), id, "data")
	os.Remove(data)
	if err := os.MkdirAll(filepath.Join(data, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	resp := ts.do("PATCH", uploadPath(loc), "admin", ts.adminPW, []byte("abc"), map[string]string{"Content-Type": "application/octet-stream"})
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("PATCH into a broken session: %d, want 500", resp.StatusCode)
	}
	logs := ts.logs.String()
	if !strings.Contains(logs, `"component":"distribution"`) || !strings.Contains(logs, "_state=") {
		t.Fatalf("no distribution error line with the upload URI:\n%s", logs)
	}
	for _, s := range []string{state, url.QueryEscape(state)} {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain the upload's _state:\n%s", logs)
		}
	}
}
