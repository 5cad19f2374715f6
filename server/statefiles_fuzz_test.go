package server

import (
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
)

// The state files that only edgecrd writes but an operator may edit (or a
// crash may leave half written): the last collection's summary and the
// sync status. Read back and shown on the web UI's device and sync pages:
// an error or a page, never a panic (issue 14).
func FuzzStateFiles(f *testing.F) {
	st, h, _, cookie := fuzzUI(f)
	f.Add(false, []byte(`{"id":"g1","started":"2026-12-07T00:00:00Z","finished":"2026-12-07T00:00:01Z","durationSeconds":1,"grace":"2m","repositories":1,"freedBytes":-5}`))
	f.Add(true, []byte(`[{"rule":"r","upstream":"u","schedule":"@every 1h","lastRun":"2026-12-07T00:00:00Z","copied":-1,"failures":["x: y"]}]`))
	f.Add(true, []byte(`[null,{"lastRun":"0001-01-01T00:00:00Z","nextRun":"9999-12-31T23:59:59Z"}]`))
	f.Add(false, []byte(`{"durationSeconds":1e308,"started":"9999-12-31T23:59:59Z"}`))
	f.Add(false, []byte("{\"id\":\"\xff\"}"))
	f.Fuzz(func(t *testing.T, sync bool, b []byte) {
		name, page := gcFile, "/"
		if sync {
			name, page = syncStatusFile, "/sync"
		}
		if err := os.WriteFile(st.Path(name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(st.Path(name))
		if sync {
			_, _ = st.LastSync()
		} else {
			_, _ = st.LastGC()
		}
		req := httptest.NewRequest(http.MethodGet, "https://127.0.0.1"+page, nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code == http.StatusSeeOther {
			t.Fatalf("GET %s: sent to %s (the session is lost)", page, w.Header().Get("Location"))
		}
	})
}
