package kv_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/e2e/testenv"
	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv("KV_HELPER_DIR"); dir != "" {
		n, _ := strconv.Atoi(os.Getenv("KV_HELPER_N"))
		if err := dirHelper(dir, n); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(testenv.Main(m))
}

func openDir(t *testing.T) kv.Store {
	d, err := kv.OpenDir(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDirContract(t *testing.T) { kvtest.Run(t, openDir) }

// TestDirLeavesNoTempFiles: writes and deletes leave only the values and
// the lock behind, and a deleted key's directories go with it.
func TestDirLeavesNoTempFiles(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	d, err := kv.OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v, err := d.Put(ctx, "x/y/z", []byte("1"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Put(ctx, "x/y/z", []byte("2"), "stale"); !errors.Is(err, kv.ErrConflict) {
		t.Fatalf("stale Put: %v", err)
	}
	if err := d.Delete(ctx, "x/y/z", v); err != nil {
		t.Fatal(err)
	}
	var left []string
	filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if p != root {
			left = append(left, strings.TrimPrefix(p, root))
		}
		return err
	})
	if len(left) != 1 || left[0] != string(filepath.Separator)+".lock" {
		t.Fatalf("left in the store: %q, want only the lock", left)
	}
}

// dirHelper is the child side of TestDirTwoProcesses: it increments the
// counter in dir n times.
func dirHelper(dir string, n int) error {
	d, err := kv.OpenDir(dir)
	if err != nil {
		return err
	}
	ctx := context.Background()
	for range n {
		for {
			b, v, err := d.Get(ctx, "counter")
			if err != nil {
				return err
			}
			i, _ := strconv.Atoi(string(b))
			if _, err = d.Put(ctx, "counter", []byte(strconv.Itoa(i+1)), v); err == nil {
				break
			}
			if !errors.Is(err, kv.ErrConflict) {
				return err
			}
		}
	}
	return nil
}

// TestDirTwoProcesses: compare-and-swap holds across processes on one
// directory (the file lock, not only the mutex).
func TestDirTwoProcesses(t *testing.T) {
	const procs, n = 3, 100
	dir := filepath.Join(t.TempDir(), "state")
	d, err := kv.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Put(context.Background(), "counter", []byte("0"), ""); err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	for range procs {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "KV_HELPER_DIR="+dir, "KV_HELPER_N="+strconv.Itoa(n))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("helper process: %v", err)
		}
	}
	b, _, err := d.Get(context.Background(), "counter")
	if err != nil || string(b) != fmt.Sprint(procs*n) {
		t.Fatalf("counter = %s, %v; want %d", b, err, procs*n)
	}
}
