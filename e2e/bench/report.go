package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/edgecr/edgecr/e2e/benchutil"
)

// Targets from the design: verification "well under 1 ms", and what a
// device must sustain for a push/pull of a large layer.
const (
	targetPushMBps  = 200
	targetPullMBps  = 300
	targetOverhead  = time.Millisecond
	targetRSSMiB    = 150
	latencyDecimals = 3
)

// runHead writes the first lines of a -pullers or -gc-fleet report: when
// the run started, the machine, its load before (load) and after the run,
// and the command line.
func runHead(w io.Writer, started time.Time, load string, args []string) {
	fmt.Fprintf(w, "- Date: %s\n", started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- Machine: %s\n", benchutil.Machine())
	fmt.Fprintf(w, "- Load average (1 min) before the run: %s, after: %s\n", load, benchutil.LoadAverage())
	fmt.Fprintf(w, "- Command: `%s`\n", benchutil.CommandLine("bench", args))
}

// report renders the results as markdown: a header naming the date,
// machine and command, the table, and how it was measured.
func report(w io.Writer, r *results, command string) {
	fmt.Fprintf(w, "- Date: %s\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "- Machine: %s\n", benchutil.Machine())
	if r.loadStart != "" {
		fmt.Fprintf(w, "- Load average (1 min) before the run: %s\n", r.loadStart)
	}
	fmt.Fprintf(w, "- Command: `%s`\n", command)
	fmt.Fprintf(w, "- Connection: %s on loopback (127.0.0.1), client and servers on the same machine\n\n", r.edgecrd.conn)

	tr := transport(r.edgecrd.conn)
	size := humanBytes(r.cfg.size)
	fmt.Fprintln(w, "| Measurement | Transport | Result | Individual runs | Target | |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")

	push, pull := rates(r.push), rates(r.pull)
	row(w, "Push of a "+size+" blob to edgecrd", transport(r.push[0].conn),
		fmt.Sprintf("%.1f MB/s (median of %d)", median(push), len(push)), runs(push),
		fmt.Sprintf("≥ %d MB/s", targetPushMBps), verdict(median(push) >= targetPushMBps))
	row(w, "Pull of the same blob, digest verified", transport(r.pull[0].conn),
		fmt.Sprintf("%.1f MB/s (median of %d)", median(pull), len(pull)), runs(pull),
		fmt.Sprintf("≥ %d MB/s", targetPullMBps), verdict(median(pull) >= targetPullMBps))
	if r.rssErr != nil {
		row(w, "Peak RSS of edgecrd during the push (VmHWM)", tr, "n/a", r.rssErr.Error(),
			fmt.Sprintf("< %d MiB", targetRSSMiB), "n/a")
	} else {
		rss := float64(r.rss) / (1 << 20)
		row(w, "Peak RSS of edgecrd during the push (VmHWM)", tr, fmt.Sprintf("%.1f MiB", rss),
			fmt.Sprintf("fresh process, read after the %d pushes", len(r.push)),
			fmt.Sprintf("< %d MiB", targetRSSMiB), verdict(rss < targetRSSMiB))
	}

	if cpu, ok := cpuPerGiB(r.push); ok {
		row(w, "edgecrd CPU time per GiB pushed", tr, cpu, "from /proc/<pid>/stat", "", "")
	}
	if cpu, ok := cpuPerGiB(r.pull); ok {
		row(w, "edgecrd CPU time per GiB pulled", tr, cpu, "from /proc/<pid>/stat", "", "")
	}

	e, h, n := summarize(r.edgecrd.samples), summarize(r.htpasswd.samples), summarize(r.noauth.samples)
	row(w, "GET /v2/ latency, edgecrd (SHA-256 Basic auth)", transport(r.edgecrd.conn), latencyCell(e), fmt.Sprintf("n=%d", e.n), "", "")
	if r.serverTime > 0 {
		row(w, "… of which inside edgecrd's handler (its own histogram)", tr, "mean "+ms(r.serverTime), "", "", "")
	}
	row(w, "GET /v2/ latency, distribution + htpasswd (bcrypt cost 10)", transport(r.htpasswd.conn), latencyCell(h), fmt.Sprintf("n=%d", h.n), "", "")
	row(w, "GET /v2/ latency, distribution without auth", transport(r.noauth.conn), latencyCell(n), fmt.Sprintf("n=%d", n.n), "", "")
	overhead := e.mean - n.mean
	row(w, "Auth overhead: edgecrd − no auth (mean)", tr, ms(overhead),
		"median: "+ms(e.median-n.median), "< 1 ms", verdict(overhead < targetOverhead))
	row(w, "htpasswd / edgecrd (mean)", tr, fmt.Sprintf("%.0f×", float64(h.mean)/float64(e.mean)),
		fmt.Sprintf("median: %.0f×", float64(h.median)/float64(e.median)), "", "")

	fmt.Fprintf(w, `
MB = 10^6 bytes. Push: POST, one PATCH carrying the whole body, PUT ?digest=
(as crane streams a layer), authenticated as admin with the device CA trusted;
the body is a wyrand PRNG stream hashed while it is sent, a distinct blob per
run. Pull: GET of each pushed blob (just written, so from the page cache), size
and SHA-256 checked while streaming. Latency: %d sequential GET /v2/ per target
on one kept-alive connection after %d warm-up requests, timed from sending the
request to reading the whole response. edgecrd runs as a child process; both
distribution baselines (handlers.NewApp behind net/http, filesystem storage,
logging off, throwaway ECDSA P-256 certificate) run inside the benchmark
process, so the overhead row also holds edgecrd's other per-request work
(routing, metrics, logs) and the process boundary.
`, r.cfg.n, latencyWarmup)
}

// cpuPerGiB is edgecrd's CPU time per GiB over the transfers, e.g.
// "1.80 s (user 0.90, sys 0.90)".
func cpuPerGiB(ts []transfer) (string, bool) {
	var cpu cpuUse
	var n int64
	for _, t := range ts {
		if !t.serverCPUOK {
			return "", false
		}
		cpu.user += t.serverCPU.user
		cpu.sys += t.serverCPU.sys
		n += t.bytes
	}
	if n == 0 {
		return "", false
	}
	gib := float64(n) / (1 << 30)
	return fmt.Sprintf("%.2f s (user %.2f, sys %.2f)",
		(cpu.user+cpu.sys).Seconds()/gib, cpu.user.Seconds()/gib, cpu.sys.Seconds()/gib), true
}

func row(w io.Writer, cells ...string) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "**FAIL**"
}

func rates(ts []transfer) []float64 {
	v := make([]float64, len(ts))
	for i, t := range ts {
		v[i] = t.mbps()
	}
	return v
}

func runs(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.1f", x)
	}
	return strings.Join(s, ", ")
}

func latencyCell(s stats) string {
	return fmt.Sprintf("mean %s, median %s, p99 %s", ms(s.mean), ms(s.median), ms(s.p99))
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.*f ms", latencyDecimals, float64(d)/float64(time.Millisecond))
}

// transport names the HTTP version in a connInfo string.
func transport(conn string) string {
	p, _, _ := strings.Cut(conn, ",")
	switch p {
	case "HTTP/2.0":
		return "HTTP/2"
	case "":
		return "n/a"
	}
	return p
}

func humanBytes(n int64) string {
	for _, u := range []struct {
		name  string
		shift uint
	}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d %s", n>>u.shift, u.name)
		}
	}
	return fmt.Sprintf("%d B", n)
}
