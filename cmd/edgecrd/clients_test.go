package main

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/edgecr/edgecr/server"
)

// Names stored by an older edgecrd (or written into identities.json by
// hand) reach the terminal escaped in `clients ls`, as a table and as JSON
// that still decodes to the stored name.
func TestClientsLsEscapesNames(t *testing.T) {
	dir := t.TempDir()
	name := "cmdtest"
	st, err := server.Ensure(dir, server.InitOptions{Name: &name, IPs: []net.IP{net.ParseIP("198.18.0.20")}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hostile := "pc\x1b[2J\x1b]0;t\x07\x1b]52;c;eA==\x07\u009b\u202eexe"
	_, token, err := st.CreateToken(server.TokenOptions{TTL: time.Hour, Uses: 1, Role: server.RolePull}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, err := server.ParseToken(token)
	if err != nil {
		t.Fatal(err)
	}
	// Redeem stores what it is given: the join API is what refuses it now.
	if _, err := st.Redeem(p, hostile, time.Now()); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := edgecrd(t, "clients", "ls", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("clients ls: %s", errOut)
	}
	if strings.ContainsAny(out, "\x1b\x07\u009b\u202e") {
		t.Errorf("clients ls prints raw control characters: %q", out)
	}
	if want := `pc\x1b[2J\x1b]0;t\x07\x1b]52;c;eA==\x07\u009b\u202eexe`; !strings.Contains(out, want) {
		t.Errorf("clients ls does not show the name escaped (%s):\n%s", want, out)
	}
	code, out, _ = edgecrd(t, "clients", "ls", "--data-dir", dir, "-o", "json")
	if code != 0 || strings.ContainsAny(out, "\x1b\x07\u009b\u202e") {
		t.Fatalf("clients ls -o json: exit %d, %q", code, out)
	}
	var cs []server.ClientInfo
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	found := false
	for _, c := range cs {
		found = found || c.Name == hostile
	}
	if !found {
		t.Errorf("the JSON does not decode to the stored name:\n%s", out)
	}
}
