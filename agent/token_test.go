package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const (
	testPin    = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	testID     = "0011223344556677"
	testSecret = "s3cr3t-s3cr3t_s3cr3t-s3cr3t_s3cr3t-s3cr3tXY"
)

func TestParseToken(t *testing.T) {
	good := "edgecr1." + testPin + "." + testID + "." + testSecret
	tok, err := ParseToken("  " + good + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Pin != testPin || tok.ID != testID || tok.reveal() != good {
		t.Errorf("token = %#v", tok)
	}
	tests := []struct{ name, in, want string }{
		{"empty", "", "empty"},
		{"three parts", "edgecr1." + testPin + "." + testSecret, "3 dot-separated parts, want 4"},
		{"five parts", good + ".x", "5 dot-separated parts"},
		{"other version", "edgecr2." + testPin + "." + testID + "." + testSecret, `does not start with "edgecr1."`},
		{"upper-case pin", "edgecr1." + strings.ToUpper(testPin) + "." + testID + "." + testSecret, "CA pin is not 64 lower-case hex"},
		{"short pin", "edgecr1." + testPin[:63] + "." + testID + "." + testSecret, "CA pin"},
		{"bad id", "edgecr1." + testPin + ".xyz." + testSecret, "token id"},
		{"padded secret", "edgecr1." + testPin + "." + testID + "." + testSecret[:42] + "=", "secret is not 43 base64url"},
		{"short secret", "edgecr1." + testPin + "." + testID + ".abc", "secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseToken(tt.in)
			if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseToken = %v, want %q", err, tt.want)
			}
			for _, part := range strings.Split(tt.in, ".") {
				if len(part) > 8 && strings.Contains(err.Error(), part) {
					t.Errorf("error %q echoes input %q", err, part)
				}
			}
		})
	}
}

// No way of printing a Token or a Secret shows the secret.
func TestTokenAndSecretNeverPrint(t *testing.T) {
	tok, err := ParseToken("edgecr1." + testPin + "." + testID + "." + testSecret)
	if err != nil {
		t.Fatal(err)
	}
	pw := Secret("hunter2-hunter2-hunter2")
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "token", tok, "password", pw)
	js, _ := json.Marshal(map[string]any{"token": tok, "password": pw})
	jr, _ := json.Marshal(JoinResponse{Password: pw})
	outs := []string{
		fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s %q", tok, tok, tok, tok, tok),
		fmt.Sprint(pw), fmt.Sprintf("%v %+v %#v %s %q", pw, pw, pw, pw, pw),
		fmt.Sprintf("%+v", JoinResponse{Password: pw}),
		logs.String(), string(js), string(jr),
	}
	for _, o := range outs {
		if strings.Contains(o, testSecret) || strings.Contains(o, "hunter2") {
			t.Errorf("secret shown: %s", o)
		}
	}
	if !strings.Contains(fmt.Sprint(tok), testID) {
		t.Errorf("token id not shown: %s", tok)
	}
	// The JSON answer of the device still decodes into a Secret.
	var back JoinResponse
	if err := json.Unmarshal([]byte(`{"password":"abc"}`), &back); err != nil || back.Password.reveal() != "abc" {
		t.Errorf("decoding a password: %q, %v", back.Password.reveal(), err)
	}
}

func TestParseDeviceURL(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"https://198.18.0.2:31001", "https://198.18.0.2:31001", ""},
		{"https://198.18.0.2:31001/", "https://198.18.0.2:31001", ""},
		{"198.18.0.2", "https://198.18.0.2:31001", ""},
		{"https://[fd00::2]", "https://[fd00::2]:31001", ""},
		{"https://box.lan:8443", "https://box.lan:8443", ""},
		{"http://198.18.0.2:31001", "", "want https"},
		{"https://u:p@198.18.0.2", "", "user name or password"},
		{"https://198.18.0.2/v2/", "", "no path"},
		{"https://198.18.0.2:0", "", "invalid port"},
		{"", "", "empty"},
	}
	for _, tt := range tests {
		u, err := ParseDeviceURL(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseDeviceURL(%q) = %v, %v; want error %q", tt.in, u, err, tt.err)
			}
			continue
		}
		if err != nil || u.String() != tt.want {
			t.Errorf("ParseDeviceURL(%q) = %v, %v; want %s", tt.in, u, err, tt.want)
		}
	}
}

// The device's message is shown only when it adds to what the code says:
// "has been used up (join token has been used up)" repeated itself.
func TestAPIErrorDoesNotRepeatItself(t *testing.T) {
	for _, tt := range []struct {
		err  APIError
		want string
	}{
		{APIError{Op: "join", Status: 403, Code: "TOKEN_USED_UP", TokenID: "1a2b", Message: "join token has been used up"}, "join token 1a2b has been used up"},
		{APIError{Op: "join", Status: 403, Code: "TOKEN_EXPIRED", TokenID: "1a2b", Message: "join token has expired"}, "join token 1a2b has expired"},
		{APIError{Op: "join", Status: 403, Code: "TOKEN_EXPIRED", TokenID: "1a2b", Message: "expired 3h ago"}, "join token 1a2b has expired (expired 3h ago)"},
		{APIError{Op: "join", Status: 400, Code: "BAD_REQUEST", Message: "name too long"}, "join: device answered 400 BAD_REQUEST (name too long)"},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.err.Code, got, tt.want)
		}
	}
}

// The device's message is its text: whatever it says, the error keeps
// what the code means and never drops a message that adds a word.
func FuzzAPIErrorMessage(f *testing.F) {
	f.Add("TOKEN_USED_UP", "join token has been used up")
	f.Add("TOKEN_EXPIRED", "expired 3h ago")
	f.Add("BAD_REQUEST", "")
	f.Fuzz(func(t *testing.T, code, msg string) {
		e := APIError{Op: "join", Status: 403, Code: code, TokenID: "1a2b", Message: msg}
		got := e.Error()
		bare := APIError{Op: "join", Status: 403, Code: code, TokenID: "1a2b"}
		if !strings.HasPrefix(got, bare.Error()) {
			t.Fatalf("%q does not start with %q", got, bare.Error())
		}
		if got == bare.Error() && !restates(bare.Error(), msg) {
			t.Fatalf("message %q dropped though it adds to %q", msg, got)
		}
	})
}
