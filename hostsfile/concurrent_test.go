package hostsfile

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentGoroutines has 20 goroutines each add its own host at once:
// with the read-modify-write under the lock, no block is lost.
func TestConcurrentGoroutines(t *testing.T) {
	path := writeHosts(t, t.TempDir(), userHosts, 0o644)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			f := NewFile(path)
			ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})
			if _, err := f.Add(t.Context(), ip, fmt.Sprintf("g%02d.lan", i)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	content := readFile(t, path)
	if !strings.HasPrefix(content, userHosts) {
		t.Errorf("the user's lines changed: %q", content)
	}
	for i := range n {
		h := fmt.Sprintf("g%02d.lan", i)
		want := netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})
		entries, err := Lookup([]byte(content), h)
		if err != nil || len(entries) != 1 || !entries[0].Owned || entries[0].Addr != want {
			t.Errorf("%s: %+v, %v; want one owned entry for %v", h, entries, err, want)
		}
	}
}

// helperEnv names the hosts file a re-executed test binary edits.
const helperEnv = "EDGECR_HOSTSFILE_TEST_HELPER"

// TestConcurrentProcesses runs several copies of the test binary at once,
// each adding 10 hosts and removing 5 of them again, one lock per change:
// the lock works across processes and no change is lost.
func TestConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skipf("cannot re-execute the test binary: %v", err)
	}
	path := writeHosts(t, t.TempDir(), userHosts, 0o644)
	const procs = 4
	cmds := make([]*exec.Cmd, procs)
	for p := range procs {
		cmd := exec.CommandContext(t.Context(), exe, "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+path, "EDGECR_HOSTSFILE_TEST_PROC="+fmt.Sprint(p))
		cmds[p] = cmd
	}
	outs := make([][]byte, procs)
	errs := make([]error, procs)
	var wg sync.WaitGroup
	for p, cmd := range cmds {
		wg.Go(func() { outs[p], errs[p] = cmd.CombinedOutput() })
	}
	wg.Wait()
	for p := range procs {
		if errs[p] != nil {
			t.Fatalf("process %d: %v\n%s", p, errs[p], outs[p])
		}
	}

	content := readFile(t, path)
	if !strings.HasPrefix(content, userHosts) {
		t.Errorf("the user's lines changed: %q", content)
	}
	for p := range procs {
		for i := range 10 {
			h := fmt.Sprintf("p%d-h%d.lan", p, i)
			entries, err := Lookup([]byte(content), h)
			if err != nil {
				t.Fatal(err)
			}
			if kept := i%2 == 0; kept != (len(entries) == 1) {
				t.Errorf("%s: entries %+v, want kept=%v", h, entries, kept)
			}
		}
	}
}

// TestHelperProcess is the body of the processes TestConcurrentProcesses
// starts; run directly it does nothing.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		return
	}
	p := os.Getenv("EDGECR_HOSTSFILE_TEST_PROC")
	f := NewFile(path)
	for i := range 10 {
		ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)})
		if _, err := f.Add(t.Context(), ip, fmt.Sprintf("p%s-h%d.lan", p, i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i < 10; i += 2 {
		if _, err := f.Remove(t.Context(), fmt.Sprintf("p%s-h%d.lan", p, i)); err != nil {
			t.Fatal(err)
		}
	}
}
