package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgecr/edgecr/e2e/testenv"
)

// joinOutput is `edgecr join` progress as it prints it (agent.Event.String).
var joinOutput = []string{
	"✓ bootstrap: joined ecr.bench.internal:38123 as c-1 (role push); the device CA sha256:5e4a… matches the token's pin",
	"✓ hosts: added 127.0.0.1 ecr.bench.internal to /r/etc/hosts",
	"✓ trust store: installed the CA (sha256:5e4a…) as /r/usr/local/share/ca-certificates/edgecr-x.crt (update-ca-certificates)",
	"✓ docker: configured: /r/etc/docker/certs.d/ecr.bench.internal:38123/ca.crt",
	"✓ containerd: configured: /r/etc/containerd/certs.d/ecr.bench.internal:38123/ca.crt",
	"✓ containers: configured: /r/etc/containers/certs.d/ecr.bench.internal:38123/ca.crt",
	"- runtimes: not present: k3s",
	"✓ credential: stored the credential of c-1 for ecr.bench.internal:38123 in /c/credentials.json (0600)",
	"✓ docker config: set credHelpers[\"ecr.bench.internal:38123\"] = \"edgecr\" in /d/config.json",
	"✓ verify: ecr.bench.internal resolves to 127.0.0.1",
	"✓ verify: TLS to ecr.bench.internal:38123 verifies with the trust bundle /r/etc/ssl/certs/ca-certificates.crt",
	"✓ verify: docker-credential-edgecr returns the credential of c-1",
	"✓ verify: GET https://ecr.bench.internal:38123/v2/ as c-1: 200",
	"",
	"Joined ecr.bench.internal:38123 as c-1 (role push).",
	"  docker pull ecr.bench.internal:38123/<repository>:<tag>",
	"Check it with `edgecr status`; undo it with `edgecr leave`.",
}

func TestJoinPhases(t *testing.T) {
	var lines []stampedLine
	for i, l := range joinOutput {
		lines = append(lines, stampedLine{at: time.Duration(i+1) * time.Millisecond, text: l})
	}
	got, err := joinPhases(lines, 30*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	ms := time.Millisecond
	want := [numPhases]time.Duration{
		phaseBootstrap:   1 * ms, // line 1
		phaseHosts:       1 * ms, // line 2
		phaseTrust:       1 * ms, // line 3
		phaseRuntimes:    4 * ms, // lines 4-7
		phaseCredentials: 2 * ms, // lines 8-9
		phaseVerify:      4 * ms, // lines 10-13
		phaseExit:        17 * ms,
	}
	if got != want {
		t.Fatalf("phases = %v, want %v", got, want)
	}

	// A rejoin ("already joined") prints the same steps; a join that
	// printed no trust line cannot be split.
	var partial []stampedLine
	for _, l := range lines {
		if !strings.Contains(l.text, "trust store") {
			partial = append(partial, l)
		}
	}
	if _, err := joinPhases(partial, 30*ms); err == nil || !strings.Contains(err.Error(), "trust store") {
		t.Fatalf("joinPhases without a trust line: %v", err)
	}
}

func TestSummarize(t *testing.T) {
	var s []time.Duration
	for _, v := range []int{9, 1, 5, 3, 7, 2, 8, 4, 6, 10} {
		s = append(s, time.Duration(v))
	}
	got := summarize(s)
	want := stats{n: 10, median: 5, p90: 9, min: 1, max: 10} // (5+6)/2 in integer nanoseconds
	if got != want {
		t.Fatalf("summarize = %+v, want %+v", got, want)
	}
	if got := summarize(s[:3]); got.median != 5 || got.p90 != 9 {
		t.Fatalf("odd count: %+v", got)
	}
}

func TestDisplayArgvHidesTheSecret(t *testing.T) {
	got := displayArgv([]string{"/tmp/x/edgecr", "join", "https://127.0.0.1:1", "--token", "edgecr1.pin.id.s3cret", "--root", "/r"})
	if strings.Contains(got, "s3cret") || got != "edgecr join https://127.0.0.1:1 --token edgecr1.pin.id.<secret> --root /r" {
		t.Fatalf("displayArgv = %q", got)
	}
}

func TestCopyTreePointsLinksIntoTheCopy(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links need privileges on Windows; the sandbox is Debian's")
	}
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "copies", "dst")
	os.MkdirAll(filepath.Join(src, "share"), 0o755)
	os.MkdirAll(filepath.Join(src, "certs"), 0o700)
	os.WriteFile(filepath.Join(src, "share", "a.crt"), []byte("A"), 0o640)
	os.Symlink(filepath.Join(src, "share", "a.crt"), filepath.Join(src, "certs", "a.pem"))
	os.Symlink("a.pem", filepath.Join(src, "certs", "hash.0"))
	os.Symlink("/etc/outside", filepath.Join(src, "certs", "out.pem"))
	os.Symlink(src+"-sibling/x", filepath.Join(src, "certs", "sibling.pem"))
	if err := copyTree(src, dst); err != nil {
		t.Fatal(err)
	}
	for link, want := range map[string]string{
		"certs/a.pem":       filepath.Join(dst, "share", "a.crt"),
		"certs/hash.0":      "a.pem",
		"certs/out.pem":     "/etc/outside",
		"certs/sibling.pem": src + "-sibling/x",
	} {
		if got, err := os.Readlink(filepath.Join(dst, link)); err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", link, got, err, want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dst, "certs", "hash.0")); err != nil || string(b) != "A" {
		t.Errorf("reading through the copied links: %q, %v", b, err)
	}
	for p, mode := range map[string]fs.FileMode{"share/a.crt": 0o640, "certs": 0o700 | fs.ModeDir} {
		if fi, err := os.Stat(filepath.Join(dst, p)); err != nil || fi.Mode() != mode {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, mode)
		}
	}
}

// TestCopiedSandboxIsWhatTheToolBuilds proves that a copy of a template
// root is the trust store update-ca-certificates would have built in the
// copy's place: same files, bytes and links, with the root's path swapped.
func TestCopiedSandboxIsWhatTheToolBuilds(t *testing.T) {
	uca := testenv.NeedCommand(t, "update-ca-certificates", "the sandbox's trust store is Debian's")
	base := t.TempDir()
	tmpl, err := oneCATemplate(t.Context(), uca, filepath.Join(base, "tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(base, "copy", "root")
	if err := copyTree(tmpl.root, copied); err != nil {
		t.Fatal(err)
	}
	built := filepath.Join(base, "built", "root")
	if err := skeleton(built); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"usr/share/ca-certificates/distro/distro-root.crt", "etc/ca-certificates.conf"} {
		b, err := os.ReadFile(filepath.Join(tmpl.root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := writeFiles(built, map[string][]byte{f: b}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := finishTemplate(t.Context(), uca, "built", "", built); err != nil {
		t.Fatal(err)
	}
	a, b := listing(t, copied), listing(t, built)
	if len(a) != len(b) {
		t.Fatalf("copy has %d entries, a fresh build %d:\n%v\n%v", len(a), len(b), a, b)
	}
	for k, v := range a {
		if b[k] != v {
			t.Errorf("%s: copy %q, fresh build %q", k, v, b[k])
		}
	}
}

// listing is every path under root, relative, with its type, mode, bytes
// or link target (root's path replaced by ROOT).
func listing(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link:" + strings.ReplaceAll(l, root, "ROOT")
		case e.IsDir():
			out[rel] = "dir:" + fi.Mode().String()
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fi.Mode().String() + ":" + strings.ReplaceAll(string(b), root, "ROOT")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReportVerdicts(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	slow := &storeResult{tmpl: &storeTemplate{label: "142 CAs (here)"}, join: ms(1400, 1600, 1700), leave: ms(1, 2, 3),
		status: ms(10, 20, 30), ucaInstall: ms(1300, 1400, 1500), ucaFresh: ms(1, 2, 3)}
	for p := range numPhases {
		slow.phases[p] = ms(1, 2, 3)
	}
	r := &results{cfg: config{n: 3}, started: time.Now(), registry: "ecr.bench.internal:1", joinURL: "https://127.0.0.1:1",
		ucaInstall: "update-ca-certificates --certsconf ROOT/etc/ca-certificates.conf", stores: []*storeResult{slow},
		get: ms(1, 2, 6), helperVersion: ms(1, 1, 1), edgecrVersion: ms(3, 3, 3)}
	var b strings.Builder
	report(&b, r, "go run ./e2e/agentbench -n 3")
	out := b.String()
	for _, want := range []string{
		"| `docker-credential-edgecr get` (stdin `ecr.bench.internal:1`) | – | 2.0 ms | 6.0 ms | 1.0 ms | 6.0 ms | < 5 ms | PASS |",
		"| `edgecr join https://127.0.0.1:1 --token T --root ROOT` | 142 CAs | 1600.0 ms | 1700.0 ms | 1400.0 ms | 1700.0 ms | < 1.5 s | **FAIL** |",
		"| `edgecr status --root ROOT` | 142 CAs | 20.0 ms | 30.0 ms | 10.0 ms | 30.0 ms | < 500 ms | PASS |",
		"update-ca-certificates is 1400.0 ms of join's median 1600.0 ms (88 %)",
		"RELOC is\n`--certsconf ROOT/etc/ca-certificates.conf`",
		"- Command: `go run ./e2e/agentbench -n 3`",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
