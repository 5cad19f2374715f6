package server

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// A client name with terminal escapes or bidirectional overrides is refused
// at join with a clear error; the token is not spent and no identity made.
func TestJoinRefusesUnsafeClientNames(t *testing.T) {
	ts := startServer(t, nil)
	_, token, err := ts.state.CreateToken(TokenOptions{TTL: time.Hour, Uses: 1, Role: RolePush}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"laptop\x1b[2J",                      // clear screen
		"\x1b]0;owned\x07",                   // window title (OSC 0)
		"\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07", // clipboard write (OSC 52)
		"a\u009b2J",                          // 8-bit CSI
		"invoice\u202efdp.exe",               // right-to-left override
		"laptop\x00evil",
		"line\nbreak",
	} {
		resp, _, e := ts.join(t, token, name)
		if resp.StatusCode != http.StatusBadRequest || e.Error.Code != "BAD_REQUEST" || !strings.Contains(e.Error.Message, "invalid client name") {
			t.Errorf("join named %q: %d %+v", name, resp.StatusCode, e)
		}
		if strings.ContainsAny(e.Error.Message, "\x1b\x07\u009b\u202e\x00") {
			t.Errorf("the error echoes the raw name: %q", e.Error.Message)
		}
	}
	clients, err := ts.state.Clients()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		if c.Kind == "client" {
			t.Fatalf("a refused join made a client: %+v", c)
		}
	}
	if resp, got, e := ts.join(t, token, "build-laptop ünïcode"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the token was spent by refused joins: %d %+v", resp.StatusCode, e)
	} else if got.ClientID == "" {
		t.Fatal("no client ID")
	}
}
