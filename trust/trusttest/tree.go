package trusttest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Snapshot records every file, directory and link under dir (type, mode,
// content or link target): two equal snapshots mean a byte-identical tree.
func Snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link -> " + target
		case fi.IsDir():
			out[rel] = fmt.Sprintf("dir %v", fi.Mode().Perm())
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %v %q", fi.Mode().Perm(), b)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot of %s: %v", dir, err)
	}
	return out
}

// DiffSnapshots describes how two snapshots differ, one line per path
// (+ added, - removed, ~ changed, long values cut); "" when they are equal.
func DiffSnapshots(before, after map[string]string) string {
	var keys []string
	for k := range before {
		keys = append(keys, k)
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		x, inBefore := before[k]
		y, inAfter := after[k]
		switch {
		case x == y && inBefore == inAfter:
		case !inBefore:
			fmt.Fprintf(&b, "+ %s: %.200s\n", k, y)
		case !inAfter:
			fmt.Fprintf(&b, "- %s: %.200s\n", k, x)
		default:
			fmt.Fprintf(&b, "~ %s: %.200s -> %.200s\n", k, x, y)
		}
	}
	return b.String()
}
