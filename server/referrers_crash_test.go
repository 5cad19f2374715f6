package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// A kill at every write of a manifest PUT with a subject (the index entry,
// then distribution's writes), then a restart: a referrer that exists is
// listed, and one that does not is not.
func TestCrashReferrersIndex(t *testing.T) {
	ctx := context.Background()
	for n := 0; ; n++ {
		r := newCrashRegistry(t, true)
		subj := r.image("c/app", "subject")
		if code := r.putManifest("c/app", "v1", subj); code != http.StatusCreated {
			t.Fatalf("pushing the subject: %d", code)
		}
		m := map[string]any{}
		json.Unmarshal(r.image("c/app", "signature"), &m)
		m["artifactType"] = "application/vnd.example.sig"
		m["subject"] = map[string]any{"mediaType": ociManifestType, "digest": sha(subj), "size": len(subj)}
		sig, _ := json.Marshal(m)
		sd := digest(sha(sig))
		idx := &referrersIndex{d: newDurableFS(&faultyDriver{StorageDriver: filesystem.New(filesystem.DriverParameters{RootDirectory: r.root, MaxThreads: 10}), plan: r.plan}, r.root)}

		// The guard's hook, then distribution, as putManifest runs them.
		g := &storageGuard{referrers: idx, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		req := httptest.NewRequest("PUT", "/v2/c/app/manifests/"+sd.String(), nil)
		req.Header.Set("Content-Type", ociManifestType)
		// The index is built (marker written): from here on it is what a
		// listing reads, not a scan.
		if _, err := (&referrersIndex{d: openDurableFS(r.root)}).list(ctx, "c/app", digest(sha(subj))); err != nil {
			t.Fatal(err)
		}
		r.plan.arm(n)
		if _, ok := g.indexReferrer(httptest.NewRecorder(), req, "c/app", sd.String(), sig); ok {
			r.putManifest("c/app", sd.String(), sig)
		}
		subject := digest(sha(subj))
		killed, _ := r.plan.state()
		r.restart()

		after := &referrersIndex{d: openDurableFS(r.root)}
		list, err := after.list(ctx, "c/app", subject)
		if err != nil {
			t.Fatalf("kill after %d writes: listing: %v", n, err)
		}
		code, _, _ := r.do("GET", "/v2/c/app/manifests/"+sd.String(), nil, "")
		exists, listed := code == http.StatusOK, len(list) == 1 && list[0].Digest == sd.String()
		if exists != listed || len(list) > 1 {
			t.Fatalf("kill after %d writes: the referrer exists %v (GET %d), listed %v (%+v)", n, exists, code, listed, list)
		}
		if !killed {
			if !exists {
				t.Fatalf("the PUT completed and the referrer does not exist")
			}
			t.Logf("a PUT with a subject is %d writes; a kill after each leaves the index right", n)
			return
		}
	}
}
