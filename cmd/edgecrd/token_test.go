package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/server"
)

// The printed pin is the one the running device's TLS handshake presents,
// in curl's --pinnedpubkey form, and both lines carry it and the token.
func TestTokenCreatePrintJoinCommand(t *testing.T) {
	d := startDevice(t)
	conn, err := tls.Dial("tcp", d.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	wantPin := server.SPKIPin(conn.ConnectionState().PeerCertificates[0])
	conn.Close()

	code, out, stderr := edgecrd(t, "token", "create", "--data-dir", d.dir, "--print-join-command", "-o", "json")
	if code != 0 {
		t.Fatalf("token create: %s", stderr)
	}
	var tok tokenCreated
	if err := json.Unmarshal([]byte(out), &tok); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	st, err := server.Load(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	url := st.Device.JoinURL()
	want := fmt.Sprintf("curl -fsSL --pinnedpubkey '%s' -k %s/install.sh | sh -s -- --token '%s' --url '%s' --pin '%s'", wantPin, url, tok.Token, url, wantPin)
	if tok.InstallCommand != want {
		t.Errorf("install command\n got %s\nwant %s", tok.InstallCommand, want)
	}
	for _, w := range []string{"$p='" + strings.TrimPrefix(wantPin, "sha256//") + "'", "-Token '" + tok.Token + "'", "$u='" + url + "'", "/install.ps1", "PSEdition -eq 'Core'"} {
		if !strings.Contains(tok.InstallCommandWindows, w) {
			t.Errorf("windows command lacks %q:\n%s", w, tok.InstallCommandWindows)
		}
	}

	code, out, _ = edgecrd(t, "token", "create", "--data-dir", d.dir)
	if code != 0 || strings.Contains(out, "pinnedpubkey") {
		t.Errorf("without --print-join-command: exit %d\n%s", code, out)
	}
}
