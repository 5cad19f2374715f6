package migrate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/edgecr/edgecr/internal/ocitest"
	"github.com/edgecr/edgecr/server"
	"github.com/edgecr/edgecr/server/migrate"
)

// After migrate, the bucket is the same device to whatever opens it: a
// replica's start (EnsureS3) and the admin commands (LoadS3) find its CA,
// the joined client's and the admin's credentials verify, the single
// node's unused token redeems and its used one keeps its count.
func TestMigratedStateLoads(t *testing.T) {
	_, loc := bucketOf(t, "site")
	s := makeSource(t, false)
	if _, err := migrate.Run(ctxT(t), migrate.Options{DataDir: s.Dir, To: loc}); err != nil {
		t.Fatal(err)
	}
	st, err := server.EnsureS3(ctxT(t), loc, server.InitOptions{}, time.Now())
	if err != nil {
		t.Fatalf("a replica's start on the migrated bucket: %v", err)
	}
	if st.CA.Fingerprint() != s.State.CA.Fingerprint() || st.Device.Host != s.State.Device.Host {
		t.Fatalf("the bucket's device is %s (CA %s), want %s (CA %s)", st.Device.Host, st.CA.Fingerprint(), s.State.Device.Host, s.State.CA.Fingerprint())
	}
	st, err = server.LoadS3(ctxT(t), loc)
	if err != nil {
		t.Fatalf("loading the migrated bucket: %v", err)
	}
	a, err := server.NewAuthenticator(st.Identities())
	if err != nil {
		t.Fatal(err)
	}
	if role, err := a.Verify(s.Client.ClientID, s.Client.Secret); err != nil || role != server.RolePush {
		t.Fatalf("the joined client's credential on the bucket: %v, %v", role, err)
	}
	if role, err := a.Verify(server.AdminUser, s.AdminPW); err != nil || role != server.RoleAdmin {
		t.Fatalf("the admin's credential on the bucket: %v, %v", role, err)
	}
	toks, err := st.Tokens()
	if err != nil {
		t.Fatal(err)
	}
	used := map[int]int{}
	for _, tk := range toks {
		used[tk.Uses] = tk.Used
	}
	if len(toks) != 2 || used[3] != 1 || used[2] != 0 {
		t.Fatalf("tokens on the bucket: %d, uses/used %v; want the 3-use token used once and the 2-use one unused", len(toks), used)
	}
	p, err := server.ParseToken(s.Token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Redeem(p, "after-migration", time.Now()); err != nil {
		t.Fatalf("redeeming the single node's token on the bucket: %v", err)
	}
}

// replica is a server.New on the bucket, as `edgecrd serve --storage`.
func replica(t *testing.T, st *server.State, id string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, st, server.Options{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ReplicaIPs: []net.IP{net.ParseIP("127.0.0.1")}, ReplicaID: id})
	if err != nil {
		cancel()
		t.Fatalf("serving the migrated bucket: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return srv.Addr().String()
}

// Acceptance 7 of issue 12: after migrate, replicas on the bucket serve
// every image of the device (pulled, digest-verified, through each of
// two) and accept every existing client credential, the admin's, and a
// token created on the single node.
func TestMigratedDeviceServes(t *testing.T) {
	_, loc := bucketOf(t, "site")
	s := makeSource(t, true)
	if _, err := migrate.Run(ctxT(t), migrate.Options{DataDir: s.Dir, To: loc}); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for range 2 {
		st, err := server.EnsureS3(ctxT(t), loc, server.InitOptions{}, time.Now())
		if err != nil {
			t.Fatalf("a replica's start on the migrated bucket: %v", err)
		}
		if st.CA.Fingerprint() != s.State.CA.Fingerprint() {
			t.Fatal("the replica has another CA")
		}
		addrs = append(addrs, replica(t, st, fmt.Sprintf("r%d", len(addrs)+1)))
	}
	for _, addr := range addrs {
		for _, who := range []struct{ user, pw string }{{"admin", s.AdminPW}, {s.Client.ClientID, s.Client.Secret}} {
			opts := remoteOpts(s.State, who.user, who.pw)
			for ref, want := range s.Images {
				r := mustRef(t, addr+"/"+ref)
				desc, err := remote.Get(r, opts...)
				if err != nil {
					t.Fatalf("%s as %s through %s: %v", ref, who.user, addr, err)
				}
				if desc.Digest != want {
					t.Fatalf("%s through %s: digest %s, want %s", ref, addr, desc.Digest, want)
				}
				if desc.MediaType.IsIndex() {
					idx, _ := desc.ImageIndex()
					err = validate.Index(idx)
				} else if strings.Contains(ref, "@") {
					err = readLayers(desc) // an artifact: no rootfs to validate
				} else {
					img, _ := desc.Image()
					err = validate.Image(img)
				}
				if err != nil {
					t.Fatalf("%s through %s: content does not verify: %v", ref, addr, err)
				}
			}
			got, err := ocitest.ReferrerDigests(mustRef(t, addr+"/apps/web:v0").Context(), s.Images["apps/web:v0"], opts...)
			if err != nil || len(got) != 1 {
				t.Fatalf("referrers of apps/web:v0 through %s: %v, %v; want the signature", addr, got, err)
			}
		}
	}
	t.Logf("%d images (with an index and a referrer) pulled digest-verified through 2 replicas as the admin and as the joined client", len(s.Images))

	// The single node's unused token joins through a replica's join API;
	// the new credential then pulls through the other replica too.
	body, _ := json.Marshal(server.JoinRequest{Token: s.Token, Name: "after-migration"})
	hc := &http.Client{Transport: transport(s.State)}
	resp, err := hc.Post("https://"+addrs[1]+server.APIJoin, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var jr server.JoinResponse
	err = json.NewDecoder(resp.Body).Decode(&jr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || jr.Password == "" {
		t.Fatalf("joining with the single node's token through a replica: %s, %v", resp.Status, err)
	}
	for _, addr := range addrs {
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := remote.Head(mustRef(t, addr+"/apps/web:v1"), remoteOpts(s.State, jr.Username, jr.Password)...)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the client joined with the migrated token, through %s: %v", addr, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// readLayers reads every layer of an artifact; go-containerregistry checks
// each against its digest as it reads.
func readLayers(desc *remote.Descriptor) error {
	img, err := desc.Image()
	if err != nil {
		return err
	}
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
