package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func (ts *testServer) join(t *testing.T, token, name string) (*http.Response, JoinResponse, APIError) {
	t.Helper()
	body, _ := json.Marshal(JoinRequest{Token: token, Name: name})
	resp := ts.do("POST", APIJoin, "", "", body, map[string]string{"Content-Type": "application/json"})
	defer resp.Body.Close()
	var ok JoinResponse
	var bad APIError
	var raw bytes.Buffer
	raw.ReadFrom(resp.Body)
	if resp.StatusCode == http.StatusOK {
		json.Unmarshal(raw.Bytes(), &ok)
	} else {
		json.Unmarshal(raw.Bytes(), &bad)
	}
	return resp, ok, bad
}

func TestJoinAPI(t *testing.T) {
	var now time.Time
	ts := startServer(t, func(o *Options) { o.Now = func() time.Time { return now } })
	now = time.Now()
	_, token, err := ts.state.CreateToken(TokenOptions{TTL: time.Hour, Uses: 2, Role: RolePull}, now)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := ParseToken(token); err != nil || p.Pin != ts.state.CA.Fingerprint() {
		t.Fatalf("token %q does not carry the CA pin (%v)", token, err)
	}

	resp, got, _ := ts.join(t, token, "laptop\"evil\"")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("join: %d", resp.StatusCode)
	}
	if got.RegistryHost != "ecr.test.internal" || got.Role != RolePull || got.Username != got.ClientID || len(got.Password) < 43 || got.CAPEM != string(ts.state.CA.PEM) {
		t.Fatalf("join response = %+v", got)
	}
	r := ts.do("GET", "/v2/", got.Username, got.Password, nil, nil)
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Fatalf("/v2/ with the joined credential: %d", r.StatusCode)
	}
	r = ts.do("POST", "/v2/x/blobs/uploads/", got.Username, got.Password, nil, nil)
	if code := errorCode(t, r); code != "DENIED" {
		t.Fatalf("pull-role client pushing: %q, want DENIED", code)
	}

	if _, _, e := ts.join(t, token, "second"); e.Error.Code != "" {
		t.Fatalf("second use of a 2-use token: %+v", e)
	}
	resp, _, e := ts.join(t, token, "third")
	if resp.StatusCode != http.StatusUnauthorized || e.Error.Code != "TOKEN_USED_UP" {
		t.Fatalf("third use: %d %+v", resp.StatusCode, e)
	}

	_, expiring, _ := ts.state.CreateToken(TokenOptions{TTL: time.Minute, Uses: 1, Role: RolePush}, now)
	now = now.Add(2 * time.Minute)
	resp, _, e = ts.join(t, expiring, "late")
	if resp.StatusCode != http.StatusUnauthorized || e.Error.Code != "TOKEN_EXPIRED" {
		t.Fatalf("expired token: %d %+v", resp.StatusCode, e)
	}

	p, _ := ParseToken(token)
	forged := FormatToken(p.Pin, p.ID, strings.Repeat("A", 43))
	resp, _, e = ts.join(t, forged, "forger")
	if resp.StatusCode != http.StatusUnauthorized || e.Error.Code != "TOKEN_INVALID" {
		t.Fatalf("wrong secret: %d %+v", resp.StatusCode, e)
	}
	other := startServer(t, nil)
	_, otherToken, _ := other.state.CreateToken(TokenOptions{TTL: time.Hour, Uses: 1, Role: RolePush}, time.Now())
	resp, _, e = ts.join(t, otherToken, "elsewhere")
	if e.Error.Code != "TOKEN_INVALID" {
		t.Fatalf("another device's token: %d %+v", resp.StatusCode, e)
	}
	for _, bad := range []string{"", "edgecr1.x.y.z", token + ".extra", strings.Replace(token, "edgecr1", "edgecr2", 1)} {
		resp, _, e = ts.join(t, bad, "x")
		if resp.StatusCode != http.StatusBadRequest || e.Error.Code != "BAD_REQUEST" {
			t.Errorf("malformed token %q: %d %+v", bad, resp.StatusCode, e)
		}
		if p.Secret != "" && strings.Contains(e.Error.Message, p.Secret) {
			t.Error("error message echoes the secret")
		}
	}

	clients, err := ts.state.Clients()
	if err != nil {
		t.Fatal(err)
	}
	// Both joined at the same (fixed) time: the list orders them by id.
	slices.SortFunc(clients, func(a, b ClientInfo) int { return strings.Compare(a.Name, b.Name) })
	if len(clients) != 2 || clients[0].Name != `laptopevil` || clients[0].Kind != "client" || clients[0].Role != RolePull {
		t.Fatalf("clients = %+v", clients)
	}
	for _, tk := range mustTokens(t, ts.state) {
		if strings.Contains(token, tk.SecretHash) {
			t.Fatal("token hash equals its secret")
		}
	}
	raw, _ := ts.state.Identities().Read()
	b, _ := json.Marshal(raw)
	if strings.Contains(string(b), p.Secret) || strings.Contains(string(b), got.Password) {
		t.Fatal("identities.json holds a secret in clear")
	}

	// leave: the client revokes itself.
	r = ts.do("DELETE", APIClientMe, got.Username, got.Password, nil, nil)
	r.Body.Close()
	if r.StatusCode != http.StatusNoContent {
		t.Fatalf("leave: %d", r.StatusCode)
	}
	r = ts.do("GET", "/v2/", got.Username, got.Password, nil, nil)
	r.Body.Close()
	if r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/v2/ after leave: %d, want 401", r.StatusCode)
	}
	r = ts.do("DELETE", APIClientMe, "admin", ts.adminPW, nil, nil)
	r.Body.Close()
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("admin leaving: %d, want 403", r.StatusCode)
	}
}

func mustTokens(t *testing.T, s *State) []*Token {
	tks, err := s.Tokens()
	if err != nil {
		t.Fatal(err)
	}
	return tks
}

func TestJoinAPIThrottlesGuessing(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.FailureBurst = 3; o.FailureEvery = time.Hour })
	_, token, _ := ts.state.CreateToken(TokenOptions{TTL: time.Hour, Uses: 1, Role: RolePush}, time.Now())
	p, _ := ParseToken(token)
	for i := range 3 {
		resp, _, _ := ts.join(t, FormatToken(p.Pin, p.ID, strings.Repeat("B", 42)+string(rune('a'+i))), "g")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, resp.StatusCode)
		}
	}
	resp, _, e := ts.join(t, token, "real")
	if resp.StatusCode != http.StatusTooManyRequests || e.Error.Code != "TOO_MANY_REQUESTS" {
		t.Fatalf("after 3 bad guesses: %d %+v", resp.StatusCode, e)
	}
}

func TestTLSChainCarriesTheCA(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.peerChain(t)
	if len(c) != 2 || Fingerprint(c[1]) != ts.state.CA.Fingerprint() {
		t.Fatalf("chain has %d certificates; want leaf + CA with the pinned fingerprint", len(c))
	}
}

func TestLastSeenAndRevokeClient(t *testing.T) {
	ts := startServer(t, nil)
	pw := ts.addIdentity("c-1", RolePush)
	r := ts.do("GET", "/v2/", "c-1", pw, nil, nil)
	r.Body.Close()
	ts.srv.seen.flush()
	cs, err := ts.state.Clients()
	if err != nil || len(cs) != 1 || cs[0].LastSeen == nil || cs[0].Revoked {
		t.Fatalf("clients = %+v, %v", cs, err)
	}
	if err := ts.state.RevokeClient("admin", time.Now()); err == nil {
		t.Fatal("admin revoked")
	}
	if err := ts.state.RevokeClient("c-404", time.Now()); !errors.Is(err, ErrNoSuchIdentity) {
		t.Fatalf("unknown client: %v", err)
	}
	if err := ts.state.RevokeClient("c-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	cs, _ = ts.state.Clients()
	if !cs[0].Revoked || cs[0].RevokedAt == nil {
		t.Fatalf("after revoke: %+v", cs[0])
	}
}

func TestCreateTokenRejectsBadOptions(t *testing.T) {
	st, _ := Ensure(t.TempDir(), testOptions("box"), time.Now())
	for _, o := range []TokenOptions{
		{TTL: 0, Uses: 1, Role: RolePush},
		{TTL: time.Hour, Uses: 0, Role: RolePush},
		{TTL: time.Hour, Uses: 1, Role: RoleAdmin},
		{TTL: time.Hour, Uses: 1, Role: "root"},
	} {
		if _, _, err := st.CreateToken(o, time.Now()); err == nil {
			t.Errorf("CreateToken(%+v) accepted", o)
		}
	}
}

func TestJoinThrottleIsAtomicAndSeparateFromTheRegistry(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.FailureBurst = 10; o.FailureEvery = time.Hour })
	_, token, _ := ts.state.CreateToken(TokenOptions{TTL: time.Hour, Uses: 1, Role: RolePush}, time.Now())
	p, _ := ParseToken(token)
	bad := FormatToken(p.Pin, p.ID, strings.Repeat("C", 43))
	body, _ := json.Marshal(JoinRequest{Token: bad, Name: "g"})
	// One connection per request, HTTP/1.1: 30 clients, not 30 streams.
	tr := ts.transport()
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	tr.DisableKeepAlives = true
	client := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Post(ts.url(APIJoin), "application/json", bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[http.StatusUnauthorized] != 10 || codes[http.StatusTooManyRequests] != 20 {
		t.Fatalf("30 concurrent bad joins with a burst of 10: %v, want 10×401 and 20×429", codes)
	}
	// The registry's allowance is untouched.
	pw := ts.addIdentity("c-ok", RolePush)
	resp := ts.do("GET", "/v2/", "c-ok", pw, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/v2/ after bad joins from the same address: %d, want 200", resp.StatusCode)
	}
}
