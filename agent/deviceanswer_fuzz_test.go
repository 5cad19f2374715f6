package agent

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// What the device answers to a join and to the replicas query is read
// from the network (issue 14): whatever the status and body, the agent
// returns an answer it checked or an error, never panics, and never shows
// the token's secret, even when the device echoes it back.
func FuzzDeviceAnswers(f *testing.F) {
	var mu sync.Mutex
	var status int
	var body []byte
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		s, b := status, body
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s)
		w.Write(b)
	}))
	defer srv.Close()
	ca := srv.Certificate()
	pin := Fingerprint(ca.Raw)
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}))
	secret := strings.Repeat("S", 43)
	tok, err := ParseToken("edgecr1." + pin + ".0123456789abcdef." + secret)
	if err != nil {
		f.Fatal(err)
	}
	base, _ := url.Parse(srv.URL)
	good := `{"registryHost":"ECR.Box.internal","port":5000,"ips":["127.0.0.1"],"caPEM":` + jsonString(caPEM) +
		`,"clientID":"c-1","username":"c-1","password":"pw","role":"push"}`
	// The harness works: the well-formed answer is accepted.
	status, body = 200, []byte(good)
	c := NewDeviceClient(base, pin)
	if jr, err := c.Join(context.Background(), tok, "fuzz"); err != nil || jr.RegistryHost != "ecr.box.internal" {
		f.Fatalf("a well-formed join answer: %+v, %v", jr, err)
	}
	c.Close()
	f.Add(uint16(200), []byte(good))
	f.Add(uint16(200), []byte(`{"registryHost":"x","port":70000,"username":"u","password":"p"}`))
	f.Add(uint16(200), []byte(`{"registryHost":"x","port":1,"username":"u","password":"p","caPEM":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}`))
	f.Add(uint16(200), []byte(`{"replicas":["127.0.0.1:1","[::1]:2",""]}`))
	f.Add(uint16(401), []byte(`{"error":{"code":"TOKEN_INVALID","message":"token `+secret+` is wrong"}}`))
	f.Add(uint16(429), []byte(`{"error":{"code":"TOO_MANY_REQUESTS","message":"retry later"}}`))
	f.Add(uint16(404), []byte(``))
	f.Add(uint16(500), []byte("\xff\xfe<html>"))
	f.Fuzz(func(t *testing.T, st uint16, b []byte) {
		mu.Lock()
		status, body = 200+int(st)%400, b
		mu.Unlock()
		c := NewDeviceClient(base, pin)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		jr, err := c.Join(ctx, tok, "fuzz")
		if err != nil {
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("a join error shows the token's secret: %v", err)
			}
		} else {
			switch {
			case jr.RegistryHost == "" || jr.RegistryHost != strings.ToLower(jr.RegistryHost):
				t.Fatalf("accepted registryHost %q", jr.RegistryHost)
			case jr.Port < 1 || jr.Port > 65535:
				t.Fatalf("accepted port %d", jr.Port)
			case jr.Username == "" || jr.Password.reveal() == "":
				t.Fatalf("accepted an answer without a credential")
			}
			blk, _ := pem.Decode([]byte(jr.CAPEM))
			if blk == nil || Fingerprint(blk.Bytes) != pin {
				t.Fatalf("accepted a CA that is not the pinned one: %q", jr.CAPEM)
			}
		}
		if _, _, err := c.Replicas(ctx); err != nil && strings.Contains(err.Error(), secret) {
			t.Fatalf("a replicas error shows the token's secret: %v", err)
		}
	})
}
