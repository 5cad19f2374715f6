package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/agent/agenttest"
)

func TestImageCommandsUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"ls", "a", "b"},
		{"ls", "-o", "yaml"},
		{"ls", "--username", "admin"},
		{"ls", "--password-stdin"},
		{"rm"},
		{"rm", "a:1", "b:1"},
		{"rm", "a:1", "--username", "admin", "--password-stdin"}, // stdin is taken: needs --yes
		{"rm", "--image", "a@sha256:0123"},                       // a digest is an image already
		{"cp", "a:1"},
		{"cp", "a:1", "b:1", "--platform", "linux"},
		{"cp", "a:1", "b:1", "--platform", "linux/arm64/v8/x"},
		{"cp", "a:1", "b:1", "--platform", "linux/arm64", "--all-platforms"},
		{"cp", "a:1", "b:1", "--all-platforms=false"},
	} {
		f := newFactory(IOStreams{In: strings.NewReader(""), Out: new(bytes.Buffer), ErrOut: new(bytes.Buffer)})
		errOut := f.IO.ErrOut.(*bytes.Buffer)
		if code := run(context.Background(), args, f); code != exitUsage || !strings.HasPrefix(errOut.String(), "edgecr: ") {
			t.Errorf("%v: exit %d, stderr %q; want 2", args, code, errOut)
		}
	}
}

// The commands' flags land in their options.
func TestNewCmdImagesParseFlags(t *testing.T) {
	f := newFactory(IOStreams{In: strings.NewReader(""), Out: new(bytes.Buffer), ErrOut: new(bytes.Buffer)})
	var cp *CpOptions
	cmd := NewCmdCp(f, &globalFlags{}, func(_ context.Context, o *CpOptions) error { cp = o; return nil })
	cmd.SetArgs([]string{"docker.io/library/alpine:3.20", "tools/alpine:3.20", "--platform", "linux/arm/v7", "--root", "/r", "-o", "json", "-u", "admin", "--password-stdin"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if cp.Src != "docker.io/library/alpine:3.20" || cp.Dst != "tools/alpine:3.20" || cp.Platform != "linux/arm/v7" || cp.Root != "/r" || cp.Output != "json" ||
		cp.Username != "admin" || !cp.PasswordStdin || !cp.AllPlatforms || cp.NoReferrers {
		t.Errorf("cp options = %+v", cp)
	}
	cmd = NewCmdCp(f, &globalFlags{}, func(_ context.Context, o *CpOptions) error { cp = o; return nil })
	cmd.SetArgs([]string{"a:1", "b:1", "--no-referrers"})
	if err := cmd.Execute(); err != nil || !cp.NoReferrers {
		t.Errorf("cp --no-referrers: %v %+v", err, cp)
	}
	var rm *RmOptions
	cmd = NewCmdRm(f, &globalFlags{}, func(_ context.Context, o *RmOptions) error { rm = o; return nil })
	cmd.SetArgs([]string{"tools/app@sha256:abc", "-y", "--root", "/r"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if rm.Ref != "tools/app@sha256:abc" || !rm.Yes || rm.Root != "/r" || rm.Interactive() {
		t.Errorf("rm options = %+v (a bytes.Reader is no terminal)", rm)
	}
	var ls *LsOptions
	cmd = NewCmdLs(f, &globalFlags{}, func(_ context.Context, o *LsOptions) error { ls = o; return nil })
	cmd.SetArgs([]string{})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if ls.Arg != "" || ls.Output != "text" {
		t.Errorf("ls options = %+v", ls)
	}
}

func TestConfirm(t *testing.T) {
	for _, tt := range []struct {
		in          string
		interactive bool
		want        error // nil: go on
		refused     bool
	}{
		{"y\n", true, nil, false},
		{"YES\r\n", true, nil, false},
		{"n\n", true, errDeclined, false},
		{"", true, errDeclined, false},
		{"whatever\n", true, errDeclined, false},
		{"y\n", false, nil, true},
	} {
		var out bytes.Buffer
		err := confirm(strings.NewReader(tt.in), &out, tt.interactive, "Delete it? [y/N] ")
		switch {
		case tt.refused:
			if err == nil || !strings.Contains(err.Error(), "add --yes") || out.Len() != 0 {
				t.Errorf("%q without a terminal: %v, asked %q", tt.in, err, out.String())
			}
		case !errors.Is(err, tt.want) || (tt.want == nil && err != nil):
			t.Errorf("%q: %v, want %v", tt.in, err, tt.want)
		case out.String() != "Delete it? [y/N] ":
			t.Errorf("%q: asked %q", tt.in, out.String())
		}
	}
}

func TestProgressBar(t *testing.T) {
	if got := renderBar(0, 0, 0); got != "[>                             ]   0%  0 B / 0 B  0.0 MB/s" {
		t.Errorf("empty: %q", got)
	}
	if got := renderBar(50<<20, 100<<20, time.Second); got != "[===============>              ]  50%  50.0 MiB / 100.0 MiB  52.4 MB/s" {
		t.Errorf("half: %q", got)
	}
	if got := renderBar(200, 100, time.Second); !strings.HasPrefix(got, "[==============================] 100%") {
		t.Errorf("over: %q", got)
	}

	var out bytes.Buffer
	now := time.Unix(0, 0)
	b := &progressBar{w: &out, now: func() time.Time { return now }, start: now}
	b.update(10, 100)
	b.update(20, 100) // within 100 ms: not drawn
	now = now.Add(barInterval)
	b.update(30, 100)
	b.finish()
	lines := strings.Split(out.String(), "\r")
	if len(lines) != 4 || !strings.Contains(lines[1], " 10%") || !strings.Contains(lines[2], " 30%") || !strings.HasSuffix(out.String(), "\n") {
		t.Errorf("bar output %q", out.String())
	}
	var none bytes.Buffer
	(&progressBar{w: &none, now: time.Now}).finish()
	if none.Len() != 0 {
		t.Errorf("finish of a bar never drawn wrote %q", none.String())
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// With nothing joined, a short reference says so and how to fix it;
// json gets no partial output.
func TestImageCommandsNotJoined(t *testing.T) {
	c := newCLI(t, agenttest.RootOptions{})
	for _, args := range [][]string{{"ls", "app"}, {"ls"}, {"rm", "app:1", "--yes"}, {"cp", "docker.io/library/alpine:3", "app:1"}} {
		code, out, errOut := c.run(append(args, "--root", c.root, "-o", "json")...)
		if code != 1 || out != "" || !strings.Contains(errOut, "not joined to any device") || !strings.Contains(errOut, "edgecr join") {
			t.Errorf("%v: exit %d\n%s\n%s", args, code, out, errOut)
		}
	}
}

func TestImageHint(t *testing.T) {
	err := imageHint(errors.Join(agent.ErrDenied), "do this")
	if !errors.Is(err, agent.ErrDenied) || !strings.HasSuffix(err.Error(), "\ndo this") {
		t.Errorf("denied: %v", err)
	}
	if err := imageHint(agent.ErrNotFound, "do this"); err != agent.ErrNotFound {
		t.Errorf("not found got a hint: %v", err)
	}
	for _, e := range []error{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, &tls.CertificateVerificationError{Err: errors.New("unknown authority")}} {
		if err := imageHint(e, ""); !strings.Contains(err.Error(), "edgecr status") {
			t.Errorf("%v: no hint", err)
		}
	}
}

// What rm says about the space matches the device's GC: nothing for a tag
// whose image stays tagged; for an untagged image, only GC with
// --delete-untagged; for a deleted image, the first GC after the grace
// period (1h by default) or `edgecrd gc --grace 0s` now.
func TestRmSpaceNote(t *testing.T) {
	now := time.Date(2026, 12, 7, 14, 5, 0, 0, time.UTC)
	for _, tt := range []struct {
		name    string
		plan    agent.RemovePlan
		want    []string
		notWant []string
	}{
		{"tag of a still tagged image", agent.RemovePlan{Tag: "1", Tags: []string{"1", "alias"}},
			[]string{"No space comes back: the image is still tagged alias."}, []string{"edgecrd gc"}},
		{"last tag", agent.RemovePlan{Tag: "1", Tags: []string{"1"}},
			[]string{"No space comes back yet", "--delete-untagged", "after 15:05 UTC", "`edgecrd gc --delete-untagged --grace 0s`"}, nil},
		{"image", agent.RemovePlan{Tags: []string{"1"}},
			[]string{"first garbage collection\nafter 15:05 UTC at the latest", "1h by default", "`edgecrd gc --grace 0s`"}, []string{"--delete-untagged"}},
	} {
		got := spaceNote(&tt.plan, now)
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", tt.name, got, w)
			}
		}
		for _, w := range tt.notWant {
			if strings.Contains(got, w) {
				t.Errorf("%s: %q has %q", tt.name, got, w)
			}
		}
	}
}

// A 401 with --username is a wrong password, not a revoked client; a
// refused connection says nothing listens there.
func TestImageHintPointsTheRightWay(t *testing.T) {
	unauth := errors.Join(agent.ErrUnauthorized)
	admin := &imageFlags{Username: "admin", PasswordStdin: true}
	got := admin.hint(unauth, "").Error()
	if !strings.Contains(got, "password given for admin is wrong") || !strings.Contains(got, "edgecrd info") || strings.Contains(got, "revoked") || strings.Contains(got, "edgecr status") {
		t.Errorf("wrong admin password: %q", got)
	}
	if got := (&imageFlags{}).hint(unauth, "").Error(); !strings.Contains(got, "revoked") {
		t.Errorf("stored credential refused: %q", got)
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 31002}, Err: syscall.ECONNREFUSED}
	got = imageHint(fmt.Errorf("reading x: %w", refused), "").Error()
	if !strings.Contains(got, "Nothing listens at 127.0.0.1:31002") || !strings.Contains(got, "edgecrd info") {
		t.Errorf("connection refused: %q", got)
	}
	if got := hintFor(fmt.Errorf("joining: %w", refused)); !strings.Contains(got, "Nothing listens at 127.0.0.1:31002") {
		t.Errorf("join, connection refused: %q", got)
	}
}
