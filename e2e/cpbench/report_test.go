package main

import (
	"strings"
	"testing"
)

func TestReplaceBlock(t *testing.T) {
	other := "# Benchmarks\n\n<!-- bench:begin -->\nx\n<!-- bench:end -->\n\n## Another section\ntext\n"
	got, err := replaceBlock(other, "table 1\n")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, other+"\n## edgecr cp against crane copy\n") || !strings.HasSuffix(got, beginMarker+"\ntable 1\n"+endMarker+"\n") {
		t.Fatalf("appended:\n%s", got)
	}
	// A section another generator added after ours stays as it is.
	withLater := got + "\n## agentbench\n<!-- agentbench:begin -->\ny\n<!-- agentbench:end -->\n"
	again, err := replaceBlock(withLater, "table 2\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Replace(withLater, "table 1\n", "table 2\n", 1); again != want {
		t.Fatalf("replaced:\n%s\nwant:\n%s", again, want)
	}
	if _, err := replaceBlock(beginMarker+"\nno end", "t"); err == nil {
		t.Fatal("a block without its end marker was accepted")
	}
	if got, _ := replaceBlock("no newline", "t\n"); !strings.HasPrefix(got, "no newline\n\n## ") {
		t.Fatalf("no trailing newline: %q", got)
	}
}

func TestParseSize(t *testing.T) {
	for s, want := range map[string]int64{"100MiB": 100 << 20, "1GiB": 1 << 30, "512KiB": 512 << 10, "1000B": 1000, "7": 7} {
		if got, err := parseSize(s); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	if _, err := parseSize("lots"); err == nil {
		t.Error("parseSize(lots) passed")
	}
}
