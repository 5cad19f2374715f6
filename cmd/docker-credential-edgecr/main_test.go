package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/docker/docker-credential-helpers/credentials"
	"github.com/edgecr/edgecr/credhelper"
	"github.com/google/go-cmp/cmp"
)

const (
	host       = "ecr.dev1.example:31001"
	secret     = "s3cr3t-Zq8vKx2-do-not-print"
	notFound   = "credentials not found in native keychain"
	versionTag = "v9.9.9-test"
)

// helperBin is the binary built once by TestMain.
var helperBin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "docker-credential-edgecr-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	helperBin = filepath.Join(dir, "docker-credential-edgecr")
	if runtime.GOOS == "windows" {
		helperBin += ".exe"
	}
	build := exec.Command("go", "build", "-ldflags", "-X main.version="+versionTag, "-o", helperBin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the helper: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// call runs one protocol action in process, as credentials.Serve would.
func call(t *testing.T, h credentials.Helper, action, input string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := credentials.HandleCommand(h, action, strings.NewReader(input), &out)
	return out.String(), err
}

func storeJSON(serverURL, user, secret string) string {
	b, _ := json.Marshal(credentials.Credentials{ServerURL: serverURL, Username: user, Secret: secret})
	return string(b)
}

func TestProtocolInProcess(t *testing.T) {
	h := credhelper.NewStore(filepath.Join(t.TempDir(), "credentials.json"))

	if _, err := call(t, h, "get", host); err == nil || err.Error() != notFound {
		t.Fatalf("get before store: %v, want exactly %q", err, notFound)
	}
	// docker login: {"ServerURL","Username","Secret"} on stdin.
	if _, err := call(t, h, "store", storeJSON("https://"+host, "client-1", secret)); err != nil {
		t.Fatalf("store: %v", err)
	}
	for _, q := range []string{host, host + "/library/alpine", "https://" + host, "https://" + host + "/v2/"} {
		out, err := call(t, h, "get", q+"\n")
		if err != nil {
			t.Fatalf("get %s: %v", q, err)
		}
		var c credentials.Credentials
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			t.Fatalf("get %s printed %q: %v", q, out, err)
		}
		if want := (credentials.Credentials{ServerURL: q, Username: "client-1", Secret: secret}); c != want {
			t.Errorf("get %s = %+v, want %+v", q, c, want)
		}
	}
	for _, q := range []string{"ecr.dev1.example:31002", "ecr.dev1.example", "other.example:31001/x"} {
		if _, err := call(t, h, "get", q); err == nil || err.Error() != notFound {
			t.Errorf("get %s: %v, want not found", q, err)
		}
	}
	out, err := call(t, h, "list", "")
	if err != nil {
		t.Fatal(err)
	}
	var list map[string]string
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{host: "client-1"}, list); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	// docker logout erases twice.
	for i := range 2 {
		if _, err := call(t, h, "erase", "https://"+host); err != nil {
			t.Fatalf("erase #%d: %v", i+1, err)
		}
	}
	if _, err := call(t, h, "get", host); err == nil || err.Error() != notFound {
		t.Errorf("get after erase: %v, want not found", err)
	}
	if out, err := call(t, h, "version", ""); err != nil || !strings.Contains(out, credentials.Version) {
		t.Errorf("version = %q, %v", out, err)
	}
	if _, err := call(t, h, "store", `{"ServerURL":"`+host+`","Username":"","Secret":"`+secret+`"}`); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("store without a username = %v, want an error without the secret", err)
	}
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs the built helper with action, stdin and extra environment.
func run(t testing.TB, env []string, action, stdin string) result {
	t.Helper()
	cmd := exec.Command(helperBin, action)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %s %s: %v", helperBin, action, err)
	}
	return r
}

func TestBinary(t *testing.T) {
	env := []string{"EDGECR_CONFIG_DIR=" + t.TempDir()}
	check := func(name string, r result, wantCode int, wantStdout string) {
		t.Helper()
		if r.code != wantCode || r.stdout != wantStdout || r.stderr != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, no stderr", name, r.code, r.stdout, r.stderr, wantCode, wantStdout)
		}
	}

	check("get before store", run(t, env, "get", host+"\n"), 1, notFound+"\n")
	check("store", run(t, env, "store", storeJSON(host, "client-1", secret)), 0, "")
	check("store again", run(t, env, "store", storeJSON("https://"+host, "client-1", secret)), 0, "")
	// go-containerregistry asks for host:port/repo first.
	check("get repo", run(t, env, "get", host+"/library/alpine\n"), 0,
		`{"ServerURL":"`+host+`/library/alpine","Username":"client-1","Secret":"`+secret+`"}`+"\n")
	check("get https", run(t, env, "get", "https://"+host), 0,
		`{"ServerURL":"https://`+host+`","Username":"client-1","Secret":"`+secret+`"}`+"\n")
	check("get other port", run(t, env, "get", "ecr.dev1.example:31002"), 1, notFound+"\n")
	check("list", run(t, env, "list", ""), 0, `{"`+host+`":"client-1"}`+"\n")
	check("erase", run(t, env, "erase", host), 0, "")
	check("erase again", run(t, env, "erase", host), 0, "")
	check("get after erase", run(t, env, "get", host), 1, notFound+"\n")
	check("list empty", run(t, env, "list", ""), 0, "{}\n")
	check("get without URL", run(t, env, "get", ""), 1, "no credentials server URL\n")
	check("store without username", run(t, env, "store", storeJSON(host, "", secret)), 1, "no credentials username\n")

	want := "docker-credential-edgecr (github.com/edgecr/edgecr) " + versionTag + "\n"
	check("version", run(t, env, "version", ""), 0, want)
	check("--version", run(t, env, "--version", ""), 0, want)
	r := run(t, env, "frobnicate", "")
	if r.code != 1 || !strings.Contains(r.stdout, "unknown action") {
		t.Errorf("unknown action: exit %d, stdout %q", r.code, r.stdout)
	}
}

// TestBinaryNeverPrintsTheSecret runs every action, including failing
// ones, and looks for the secret anywhere but in get's answer.
func TestBinaryNeverPrintsTheSecret(t *testing.T) {
	dir := t.TempDir()
	env := []string{"EDGECR_CONFIG_DIR=" + dir}
	var outputs []result
	outputs = append(outputs,
		run(t, env, "store", storeJSON(host, "client-1", secret)),
		run(t, env, "list", ""),
		run(t, env, "get", "other.example:1"),
		run(t, env, "erase", "other.example:1"),
		run(t, env, "version", ""),
		run(t, env, "store", storeJSON(host, "", secret)),
		run(t, env, "store", storeJSON("https://", "u", secret)),
	)
	get := run(t, env, "get", host)
	if !strings.Contains(get.stdout, secret) || get.stderr != "" {
		t.Fatalf("get: stdout %q, stderr %q", get.stdout, get.stderr)
	}

	// A damaged file: every action fails, naming the file, quoting nothing.
	path := filepath.Join(dir, "credentials.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	damaged := bytes.Replace(data, []byte(`"`+secret+`"`), []byte(`"`+secret), 1)
	if err := os.WriteFile(path, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{"get", "list", "erase", "store"} {
		in := host
		if action == "store" {
			in = storeJSON(host, "client-1", "new-"+secret)
		}
		r := run(t, env, action, in)
		if r.code != 1 || !strings.Contains(r.stdout, path) {
			t.Errorf("%s on a damaged file: exit %d, stdout %q; want exit 1 naming the file", action, r.code, r.stdout)
		}
		outputs = append(outputs, r)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, damaged) {
		t.Error("store overwrote a damaged credentials file")
	}

	for i, r := range outputs {
		if strings.Contains(r.stdout, secret) || strings.Contains(r.stderr, secret) {
			t.Errorf("output #%d shows the secret: stdout %q, stderr %q", i, r.stdout, r.stderr)
		}
	}
}

// TestBinaryDefaultPath: without EDGECR_CONFIG_DIR the helper reads the
// file where DefaultPath puts it for the user.
func TestBinaryDefaultPath(t *testing.T) {
	home := t.TempDir()
	env := []string{"EDGECR_CONFIG_DIR=", "HOME=" + home, "USERPROFILE=" + home, "XDG_CONFIG_HOME=", "APPDATA=" + filepath.Join(home, "AppData", "Roaming")}
	lookup := func(k string) string {
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, k+"="); ok {
				return v
			}
		}
		return ""
	}
	path := credhelper.DefaultPath(runtime.GOOS, lookup, home)
	if err := credhelper.NewStore(path).Add(&credentials.Credentials{ServerURL: host, Username: "client-1", Secret: secret}); err != nil {
		t.Fatal(err)
	}
	if r := run(t, env, "get", host); r.code != 0 || !strings.Contains(r.stdout, `"Username":"client-1"`) {
		t.Errorf("get with the default path: exit %d, stdout %q", r.code, r.stdout)
	}
}

// TestBinaryWithoutHome: no home and no override is an error that says
// what to set, for every action but version.
func TestBinaryWithoutHome(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows locates the profile without environment variables")
	}
	env := []string{"EDGECR_CONFIG_DIR=", "HOME=", "XDG_CONFIG_HOME="}
	if r := run(t, env, "get", host); r.code != 1 || !strings.Contains(r.stdout, "EDGECR_CONFIG_DIR") {
		t.Errorf("get without a home: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := run(t, env, "version", ""); r.code != 0 {
		t.Errorf("version without a home: exit %d, stdout %q", r.code, r.stdout)
	}
}
