package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The steps with the real binary: a second `edgecrd serve` on the
// data dir with another --listen is refused with the first one's pid, and
// the join line still names the port the first one serves.
func TestSecondServeIsRefusedWithThePID(t *testing.T) {
	d := startDevice(t, "", "--ui-listen", "off")
	before, err := os.ReadFile(filepath.Join(d.dataDir, "device.json"))
	if err != nil {
		t.Fatal(err)
	}
	other := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	_, e, err := edgecrd(t, "serve", "--data-dir", d.dataDir, "--listen", other, "--ui-listen", "off")
	who := fmt.Sprintf("in use by edgecrd serve (pid %d)", d.cmd.Process.Pid)
	if err == nil || !strings.Contains(e, who) {
		t.Fatalf("second serve: %v\n%s\nwant a refusal naming %q", err, e, who)
	}
	t.Logf("second serve: %s", strings.TrimSpace(e))
	_, e, err = edgecrd(t, "init", "--data-dir", d.dataDir, "--listen", other)
	if err == nil || !strings.Contains(e, who) {
		t.Fatalf("init --listen while serving: %v\n%s\nwant a refusal naming %q", err, e, who)
	}
	after, _ := os.ReadFile(filepath.Join(d.dataDir, "device.json"))
	if string(after) != string(before) {
		t.Fatal("device.json changed")
	}
	out, e, err := edgecrd(t, "token", "create", "--data-dir", d.dataDir, "-o", "json")
	if err != nil || !strings.Contains(out, d.addr[strings.LastIndexByte(d.addr, ':'):]+" --token") {
		t.Fatalf("token create: %v\n%s%s\nwant the join line for %s", err, out, e, d.addr)
	}
}
