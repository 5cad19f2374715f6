package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/edgecr/edgecr/e2e/benchutil"
)

// The markers of cpbench's block in the markdown file.
var beginMarker, endMarker = benchutil.Markers("cpbench")

const beginPrefix = "<!-- cpbench:begin"

// sectionHead introduces the block when cpbench first adds it to a file.
const sectionHead = "## edgecr cp against crane copy\n\n" +
	"`go run ./e2e/cpbench -o docs/benchmarks.md` copies one image between two edgecrd\n" +
	"instances on loopback with `edgecr cp` and with `crane copy` (go-containerregistry's CLI,\n" +
	"built at the version edgecr uses), alternating, each run into a fresh repository of the\n" +
	"destination so that every blob moves; then each copies again onto its first copy, where\n" +
	"every blob is already there. Wall time of the process, from exec to exit.\n\n"

func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "- Date: %s\n", r.date)
	fmt.Fprintf(&b, "- Machine: %s\n", r.machine)
	fmt.Fprintf(&b, "- Command: `%s`\n", strings.TrimSpace(r.command))
	fmt.Fprintf(&b, "- Image: OCI, %d random layers of %s (%s with config and manifest, %d blobs), edgecrd → edgecrd on 127.0.0.1 (%s as Go's transport negotiates it with edgecrd)\n\n",
		r.layers, human(r.layerSize), human(r.bytes), r.blobs, r.conn)
	b.WriteString("| Copy | Tool | Median | Throughput (median) | Individual runs (s) |\n|---|---|---|---|---|\n")
	row := func(what, tool string, ds []time.Duration, withRate bool) {
		prec := 3 // the copies onto a copy take milliseconds
		if withRate {
			prec = 2
		}
		runs := make([]string, len(ds))
		for i, d := range ds {
			runs[i] = strconv.FormatFloat(d.Seconds(), 'f', prec, 64)
		}
		tp := ""
		if withRate {
			tp = rate(r.bytes, median(ds))
		}
		fmt.Fprintf(&b, "| %s | %s | %s s | %s | %s |\n", what, tool, strconv.FormatFloat(median(ds).Seconds(), 'f', prec, 64), tp, strings.Join(runs, ", "))
	}
	full := fmt.Sprintf("%s, every blob moves", human(r.bytes))
	row(full, "`edgecr cp`", r.edgecr, true)
	row(full, "`crane copy` "+craneVersion, r.crane, true)
	row("onto its own copy, every blob there", "`edgecr cp`", r.edgecrAgain, false)
	row("onto its own copy, every blob there", "`crane copy` "+craneVersion, r.craneAgain, false)
	ratio := median(r.crane).Seconds() / median(r.edgecr).Seconds()
	fmt.Fprintf(&b, "\nedgecr cp / crane copy throughput (medians of %d): **%.2f×**. ", r.runs, ratio)
	fmt.Fprintf(&b, "`edgecr cp` reported %d of %d blobs copied on each full copy and 0 on the copies onto a copy.\n", r.copied, r.blobs)
	fmt.Fprintf(&b, "MB = 10^6 bytes. crane runs with `copy` defaults (jobs = GOMAXPROCS = %d here); edgecr cp moves 4 blobs at once.\n", runtime.GOMAXPROCS(0))
	return b.String()
}

// writeBlock puts text between the cpbench markers of the markdown file at
// path, or appends a section holding them when they are not there; the
// rest of the file is kept byte for byte. The file is read right before
// it is written (other generators edit other blocks of it) and replaced
// atomically.
func writeBlock(path, text string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	updated, err := replaceBlock(string(old), text)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cpbench-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(updated); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// replaceBlock is doc with the cpbench block holding text.
func replaceBlock(doc, text string) (string, error) {
	block := beginMarker + "\n" + text + endMarker
	i := strings.Index(doc, beginPrefix)
	if i < 0 {
		if doc != "" && !strings.HasSuffix(doc, "\n") {
			doc += "\n"
		}
		if doc != "" {
			doc += "\n"
		}
		return doc + sectionHead + block + "\n", nil
	}
	j := strings.Index(doc[i:], endMarker)
	if j < 0 {
		return "", fmt.Errorf("the cpbench block has no end marker %q", endMarker)
	}
	return doc[:i] + block + doc[i+j+len(endMarker):], nil
}

// human is n in IEC units.
func human(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}

// parseSize parses 100MiB, 1GiB, 512KiB, 1000B, 1000.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}, {"", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("size %q: %w", s, err)
			}
			return n * u.mult, nil
		}
	}
	return 0, fmt.Errorf("size %q", s)
}

// machine describes this machine for the report.
func machine() string {
	parts := []string{fmt.Sprintf("nproc %d", runtime.NumCPU())}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				parts = append(parts, "CPU "+strings.TrimSpace(v))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		parts = append(parts, "Linux "+strings.TrimSpace(string(b)))
	}
	return strings.Join(append(parts, runtime.GOOS+"/"+runtime.GOARCH, runtime.Version()), ", ")
}
