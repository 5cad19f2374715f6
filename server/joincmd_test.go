package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
)

// The PowerShell line hashes spkiP256Prefix + the key's point, which must
// be exactly the SubjectPublicKeyInfo curl hashes.
func TestSPKIP256Prefix(t *testing.T) {
	var prefix []byte
	for _, b := range strings.Split(spkiP256Prefix, ",") {
		var v byte
		if _, err := fmt.Sscanf(b, "0x%x", &v); err != nil {
			t.Fatal(err)
		}
		prefix = append(prefix, v)
	}
	for range 3 {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		spki, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		ek, err := k.PublicKey.ECDH()
		if err != nil {
			t.Fatal(err)
		}
		if got := string(append(append([]byte{}, prefix...), ek.Bytes()...)); got != string(spki) {
			t.Fatalf("prefix + point = %x, want SPKI %x", got, spki)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"a.b-c": "'a.b-c'", "it's": `'it'\''s'`} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %s, want %s", in, got, want)
		}
	}
	if got := psQuote("it's"); got != "'it''s'" {
		t.Errorf("psQuote = %s", got)
	}
}
