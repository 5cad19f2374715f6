package server

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// A manifest with non-distributable layers (blobs at their http(s) URLs,
// not pushed) is stored and served; a URL of another scheme is refused.
func TestNonDistributableLayers(t *testing.T) {
	ts := startServer(t, nil)
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	if err := remote.WriteLayer(ts.ref("nd/app").Context(), static.NewLayer(cfg, types.OCIConfigJSON), ts.admin()...); err != nil {
		t.Fatal(err)
	}
	cd, _ := digestOf(cfg, "sha256")
	foreign, _ := digestOf([]byte("foreign layer"), "sha256")
	manifest := func(url string) []byte {
		b, _ := json.Marshal(map[string]any{
			"schemaVersion": 2,
			"mediaType":     string(types.OCIManifestSchema1),
			"config":        map[string]any{"mediaType": string(types.OCIConfigJSON), "digest": cd.String(), "size": len(cfg)},
			"layers": []any{map[string]any{
				"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
				"digest":    foreign.String(), "size": 12345, "urls": []string{url},
			}},
		})
		return b
	}
	hdr := map[string]string{"Content-Type": string(types.OCIManifestSchema1)}
	good := manifest("https://store.example.com/blobs/" + foreign.String())
	resp := ts.do("PUT", "/v2/nd/app/manifests/v1", "admin", ts.adminPW, good, hdr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT with a non-distributable layer: %d, want 201", resp.StatusCode)
	}
	gd, _ := digestOf(good, "sha256")
	resp = ts.do("GET", "/v2/nd/app/manifests/"+gd.String(), "admin", ts.adminPW, nil, map[string]string{"Accept": string(types.OCIManifestSchema1)})
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET: %d, want 200", resp.StatusCode)
	}
	resp = ts.do("PUT", "/v2/nd/app/manifests/v2", "admin", ts.adminPW, manifest("ftp://store.example.com/x"), hdr)
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		t.Errorf("PUT with an ftp URL: %d, want a refusal", resp.StatusCode)
	}
}
