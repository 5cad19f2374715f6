package migrate_test

import (
	"testing"
	"time"

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
