package childproc

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestKillStart: Kill ends a running child and reaps it (Pid 0, the exited
// channel closed), a second Kill does nothing, and Start runs another.
func TestKillStart(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary itself, told to wait (TestMain): a child on every OS.
	sleeper := func() *exec.Cmd {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), "CHILDPROC_SLEEP=1")
		return cmd
	}
	var p Proc
	if p.Pid() != 0 {
		t.Fatalf("Pid of the zero Proc = %d, want 0", p.Pid())
	}
	p.Kill() // none running: nothing to do
	for range 2 {
		exited, err := p.Start(sleeper())
		if err != nil {
			t.Fatal(err)
		}
		if p.Pid() == 0 {
			t.Fatal("Pid of a running child = 0")
		}
		p.Kill()
		select {
		case <-exited:
		default:
			t.Fatal("Kill returned before the child was reaped")
		}
		if p.Pid() != 0 {
			t.Fatalf("Pid after Kill = %d, want 0", p.Pid())
		}
		p.Kill()
	}
}

// TestMain makes the test binary the child of TestKillStart when
// CHILDPROC_SLEEP=1: it sleeps until killed.
func TestMain(m *testing.M) {
	if os.Getenv("CHILDPROC_SLEEP") == "1" {
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}
