package agenttest

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/trust"
	"github.com/edgecr/edgecr/trust/trusttest"
)

// RootOptions configure DebianRoot.
type RootOptions struct {
	// Hosts is the initial etc/hosts (default: localhost lines).
	Hosts string
	// Runtimes are configuration directories to create so that runtimes are
	// detected, e.g. "etc/docker", "etc/containerd".
	Runtimes []string
	// RealTool makes the runner the real update-ca-certificates (relocated
	// by the trust package's flags) instead of the emulation; the caller
	// checks that it is installed.
	RealTool bool
}

// DebianRoot returns a temp system root laid out like Debian's trust store
// (os-release, /usr/share/ca-certificates with a distribution CA, the local
// anchor directory, /etc/ssl/certs with its bundle and links), an etc/hosts,
// and a runner for the trust store: by default a trusttest.Runner that
// emulates update-ca-certificates relocated to that root (it rebuilds the
// bundle from the configured and local CAs and keeps one link per local
// anchor, as the real tool does), with RealTool the real one.
func DebianRoot(t testing.TB, o RootOptions) (root string, runner trust.Runner) {
	t.Helper()
	root = t.TempDir()
	hosts := o.Hosts
	if hosts == "" {
		hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"
	}
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n")
	write("etc/hosts", hosts)
	write("usr/share/ca-certificates/mozilla/Distribution_CA.crt", string(trusttest.NewCA(t, "distribution CA")))
	write("etc/ca-certificates.conf", "# comment\nmozilla/Distribution_CA.crt\n")
	for _, d := range append([]string{"usr/local/share/ca-certificates", "etc/ssl/certs", "etc/ca-certificates/update.d"}, o.Runtimes...) {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if o.RealTool {
		t.Setenv("TMPDIR", t.TempDir()) // the script's mktemp scratch files
		runner = trust.ExecRunner{}
	} else {
		runner = &trusttest.Runner{Respond: func(name string, args []string) ([]byte, error) {
			if name != "update-ca-certificates" {
				return nil, fmt.Errorf("unexpected command %s", name)
			}
			return nil, emulateUpdateCACertificates(args)
		}}
	}
	if out, err := runner.Run(t.Context(), "update-ca-certificates", append(relocation(root), "--fresh")...); err != nil {
		t.Fatalf("building the fixture trust store: %v\n%s", err, out)
	}
	return root, runner
}

// relocation is the flag set the trust package passes for root.
func relocation(root string) []string {
	p := func(s string) string { return filepath.Join(root, s) }
	return []string{
		"--certsconf", p("etc/ca-certificates.conf"),
		"--certsdir", p("usr/share/ca-certificates"),
		"--localcertsdir", p("usr/local/share/ca-certificates"),
		"--etccertsdir", p("etc/ssl/certs"),
		"--hooksdir", p("etc/ca-certificates/update.d"),
	}
}

func emulateUpdateCACertificates(args []string) error {
	flags := map[string]string{}
	for i := 0; i < len(args); i++ {
		if strings.HasPrefix(args[i], "--") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			flags[args[i]] = args[i+1]
			i++
		}
	}
	conf, certs, local, etc := flags["--certsconf"], flags["--certsdir"], flags["--localcertsdir"], flags["--etccertsdir"]
	if conf == "" || certs == "" || local == "" || etc == "" {
		return fmt.Errorf("update-ca-certificates: not relocated: %v", args)
	}
	type anchor struct{ link, target string }
	var anchors []anchor
	data, err := os.ReadFile(conf)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "!") {
			continue
		}
		anchors = append(anchors, anchor{strings.TrimSuffix(filepath.Base(line), ".crt") + ".pem", filepath.Join(certs, line)})
	}
	locals, _ := filepath.Glob(filepath.Join(local, "*.crt"))
	sort.Strings(locals)
	for _, l := range locals {
		anchors = append(anchors, anchor{strings.TrimSuffix(filepath.Base(l), ".crt") + ".pem", l})
	}
	// Drop every link, then make one per anchor (what --fresh does; the
	// emulation always does it, so a removal leaves nothing dangling).
	entries, _ := os.ReadDir(etc)
	for _, e := range entries {
		if e.Type()&fs.ModeSymlink != 0 {
			os.Remove(filepath.Join(etc, e.Name()))
		}
	}
	var bundle bytes.Buffer
	for _, a := range anchors {
		b, err := os.ReadFile(a.target)
		if err != nil {
			return err
		}
		bundle.Write(bytes.TrimSpace(b))
		bundle.WriteByte('\n')
		if err := os.Symlink(a.target, filepath.Join(etc, a.link)); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(etc, "ca-certificates.crt"), bundle.Bytes(), 0o644)
}
