package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/edgecr/edgecr/e2e/benchutil"
)

// Targets of the comparison (issue 16), as ratios within one run.
const (
	targetPushVsAnchor = 1.05 // blob push over zot's and distribution's
	targetPullVsAnchor = 1.0  // blob pull over the best anchor's
	targetPullVsCopy   = 0.9  // blob pull over the TLS copy limit
)

// reportCompare renders a comparison as markdown: header, one table per
// HTTP version, the ratios against the targets, and how it was measured.
func reportCompare(w io.Writer, r *compareResults, command string) {
	fmt.Fprintf(w, "- Date: %s\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "- Machine: %s\n", benchutil.Machine())
	if r.loadStart != "" {
		fmt.Fprintf(w, "- Load average (1 min): %s before the run, %s after\n", r.loadStart, r.loadEnd)
	}
	fmt.Fprintf(w, "- Command: `%s`\n", command)
	fmt.Fprintf(w, "- Workload: %s blob push and pull, an image of %d×%s layers pushed and pulled with go-containerregistry, %d GET /v2/ with auth; per server and HTTP version, %d rounds, servers in rotated order each round\n",
		humanBytes(r.cfg.size), imageLayers, humanBytes(imageLayerSize), r.cfg.n, r.cfg.runs)
	if r.zotSkip != "" {
		fmt.Fprintf(w, "- zot: not measured: %s\n", r.zotSkip)
	}
	fmt.Fprintln(w)

	for _, p := range r.cfg.protos {
		fmt.Fprintf(w, "**%s** (%s)\n\n", protoTitle(p), r.connOf(p))
		fmt.Fprintln(w, "| Server | Blob push MB/s | CPU s per GiB pushed | Blob pull MB/s | CPU s per GiB pulled | Machine CPU s per GiB pushed / pulled | Image push | Image pull | GET /v2/ with auth |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
		for _, s := range r.servers {
			m := s.m[p]
			if s.absent[p] {
				row(w, s.name, "not offered", "", "", "", "", "", "", "")
				continue
			}
			if s.copyOnly {
				row(w, s.name, "–", "–", rateCell(m.pull), cpuCell(m.pull), "– / "+machineCell(m.pull), "–", "–", "–")
				continue
			}
			row(w, s.name, rateCell(m.push), cpuCell(m.push), rateCell(m.pull), cpuCell(m.pull),
				machineCell(m.push)+" / "+machineCell(m.pull), durCell(m.imagePush), durCell(m.imagePull), ms(summarize(m.ping).median))
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintln(w, "| Target (issue 16) | Transport | edgecrd | Against | Ratio | |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	e := r.server("edgecrd")
	for _, p := range r.cfg.protos {
		tr := protoTitle(p)
		em := e.m[p]
		if e.absent[p] {
			row(w, "(edgecrd does not offer "+tr+")", tr, "", "", "", "")
			continue
		}
		for _, a := range []string{"zot", "distribution"} {
			am := r.measuresOf(a, p)
			if am == nil {
				continue
			}
			ratio := median(rates(em.push)) / median(rates(am.push))
			row(w, "Blob push ≥ 1.05× "+a, tr, mbps(em.push), a+" "+mbps(am.push),
				fmt.Sprintf("%.2f×", ratio), verdict(ratio >= targetPushVsAnchor))
			ec, eok := cpuPerGiBMedian(em.push)
			ac, aok := cpuPerGiBMedian(am.push)
			if eok && aok {
				row(w, "CPU per GiB pushed below "+a, tr, fmt.Sprintf("%.2f s", ec), fmt.Sprintf("%s %.2f s", a, ac),
					fmt.Sprintf("%.2f×", ec/ac), verdict(ec < ac))
			}
		}
		best, bestName := 0.0, ""
		for _, a := range []string{"zot", "distribution"} {
			if am := r.measuresOf(a, p); am != nil && median(rates(am.pull)) > best {
				best, bestName = median(rates(am.pull)), a
			}
		}
		ep := median(rates(em.pull))
		if bestName != "" {
			row(w, "Blob pull ≥ 1.0× the best anchor", tr, mbps(em.pull), fmt.Sprintf("%s %.1f MB/s", bestName, best),
				fmt.Sprintf("%.2f×", ep/best), verdict(ep/best >= targetPullVsAnchor))
		}
		if cm := r.measuresOf("TLS copy limit", p); cm != nil {
			lim := median(rates(cm.pull))
			row(w, "Blob pull ≥ 0.9× the TLS copy limit", tr, mbps(em.pull), fmt.Sprintf("copy %.1f MB/s", lim),
				fmt.Sprintf("%.2f×", ep/lim), verdict(ep/lim >= targetPullVsCopy))
		}
		for _, k := range []struct {
			what string
			get  func(*measures) time.Duration
			fmt  func(time.Duration) string
		}{
			{"Image push fastest", func(m *measures) time.Duration { return medianDur(m.imagePush) }, msDur},
			{"Image pull fastest", func(m *measures) time.Duration { return medianDur(m.imagePull) }, msDur},
			{"GET /v2/ with auth fastest", func(m *measures) time.Duration { return summarize(m.ping).median }, ms},
		} {
			ev := k.get(em)
			other, on := time.Duration(0), ""
			for _, a := range []string{"zot", "distribution"} {
				if am := r.measuresOf(a, p); am != nil && (on == "" || k.get(am) < other) {
					other, on = k.get(am), a
				}
			}
			if on != "" {
				row(w, k.what, tr, k.fmt(ev), on+" "+k.fmt(other), fmt.Sprintf("%.2f×", float64(ev)/float64(other)), verdict(ev < other))
			}
		}
	}
	var rss []string
	lowest := true
	for _, s := range r.servers {
		if s.copyOnly {
			continue
		}
		if s.rssErr != nil {
			rss = append(rss, s.name+" n/a")
			continue
		}
		rss = append(rss, fmt.Sprintf("%s %.1f MiB", s.name, float64(s.rss)/(1<<20)))
		if (s.name == "zot" || s.name == "distribution") && e.rssErr == nil && s.rss <= e.rss {
			lowest = false
		}
	}
	row(w, "Peak RSS lowest (VmHWM over the whole run)", "both", rss[0], strings.Join(rss[1:], ", "), "", verdict(lowest && e.rssErr == nil))

	fmt.Fprintf(w, `
MB = 10^6 bytes; each cell is the median over the rounds, throughput with
(min–max). CPU: the server process's utime+stime from /proc/<pid>/stat,
read before and after each transfer, per GiB moved (user + sys); this
kernel charges each tick to the task it interrupts, so interrupts and host
work that land while a server runs count as its system time. Machine CPU:
the busy time of all CPUs from /proc/stat over the same span (user, nice,
system, irq, softirq), the client's included, which is the same for every
server. Blob push:
POST, one PATCH with the whole body, PUT ?digest= (as crane streams a layer),
a distinct blob per round; pull: GET of that blob, size and SHA-256 checked
while streaming, then its files are removed from the server's storage (so
every push writes into page-cache pages freed just before; the run starts
by writing and removing a file of twice the blob size for the first). Image: %d distinct %s layers, config and OCI manifest,
remote.Write and remote.Image plus every layer read (digest-checked) with
go-containerregistry's defaults. GET /v2/: %d sequential requests with Basic
auth on one kept-alive connection per round after %d warm-up requests.
Servers: edgecrd as built from this tree (edgecrd serve, its defaults);
distribution %s (its handlers.NewApp behind net/http, what `+"`registry serve`"+` runs,
filesystem storage, htpasswd at bcrypt cost %d, access log off); zot %s
(local storage at its defaults: dedupe on, no fsync, htpasswd at bcrypt cost
%d, log level error); the TLS copy limit is a plain net/http server answering
GET with http.ServeContent of a file already in the page cache. With
-zot-commit, "zot, commit" is the same zot with storage commit: true (it
fsyncs an upload before it becomes a blob, as edgecrd and distribution
do). Each server is a process of its own with a throwaway ECDSA P-256
certificate (edgecrd its device CA's); one client process.
`, imageLayers, humanBytes(imageLayerSize), r.cfg.n, latencyWarmup, distributionVersion, r.cfg.cost, zotVersion, r.cfg.cost)
}

// distributionVersion is the module version go.mod pins.
const distributionVersion = "v3.1.2"

func (r *compareResults) server(name string) *contender {
	for _, s := range r.servers {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (r *compareResults) measuresOf(name string, p proto) *measures {
	if s := r.server(name); s != nil && !s.absent[p] {
		return s.m[p]
	}
	return nil
}

// connOf is what the edgecrd client negotiated over p.
func (r *compareResults) connOf(p proto) string {
	if s := r.server("edgecrd"); s != nil && s.m[p].conn != "" {
		return s.m[p].conn
	}
	return string(p)
}

func protoTitle(p proto) string {
	if p == protoH2 {
		return "HTTP/2"
	}
	return "HTTP/1.1"
}

func mbps(ts []transfer) string { return fmt.Sprintf("%.1f MB/s", median(rates(ts))) }

func rateCell(ts []transfer) string {
	v := rates(ts)
	if len(v) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f (%.0f–%.0f)", median(v), slices.Min(v), slices.Max(v))
}

// cpuPerGiBMedian is the median over the transfers of the server's CPU
// seconds per GiB moved.
func cpuPerGiBMedian(ts []transfer) (float64, bool) {
	v := make([]float64, 0, len(ts))
	for _, t := range ts {
		if !t.serverCPUOK || t.bytes == 0 {
			return 0, false
		}
		v = append(v, (t.serverCPU.user+t.serverCPU.sys).Seconds()/(float64(t.bytes)/(1<<30)))
	}
	return median(v), len(v) > 0
}

func cpuCell(ts []transfer) string {
	total, ok := cpuPerGiBMedian(ts)
	if !ok {
		return "n/a"
	}
	var u, s []float64
	for _, t := range ts {
		gib := float64(t.bytes) / (1 << 30)
		u = append(u, t.serverCPU.user.Seconds()/gib)
		s = append(s, t.serverCPU.sys.Seconds()/gib)
	}
	return fmt.Sprintf("%.2f (user %.2f, sys %.2f)", total, median(u), median(s))
}

// machineCell is the median over the transfers of the machine's busy CPU
// seconds per GiB moved (client, server and kernel alike).
func machineCell(ts []transfer) string {
	v := make([]float64, 0, len(ts))
	for _, t := range ts {
		if !t.machineCPUOK || t.bytes == 0 {
			return "n/a"
		}
		v = append(v, t.machineCPU.Seconds()/(float64(t.bytes)/(1<<30)))
	}
	if len(v) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", median(v))
}

func medianDur(d []time.Duration) time.Duration {
	v := make([]float64, len(d))
	for i, x := range d {
		v[i] = float64(x)
	}
	return time.Duration(median(v))
}

func durCell(d []time.Duration) string {
	if len(d) == 0 {
		return "n/a"
	}
	return msDur(medianDur(d))
}

func msDur(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}
