package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/edgecr/edgecr/e2e/benchutil"
)

// Targets from issue 3 ("Performance (benchmark table)").
const (
	targetGet    = 5 * time.Millisecond
	targetJoin   = 1500 * time.Millisecond
	targetStatus = 500 * time.Millisecond
)

// report renders the results as a markdown section: what the command does,
// a header naming the date, machine and command, the table of commands, and
// where join's time goes.
func report(w io.Writer, r *results, command string) {
	fmt.Fprintf(w, `## Client commands: get, join, status, leave

`+"`go run ./e2e/agentbench`"+` builds edgecrd, edgecr and docker-credential-edgecr,
starts `+"`edgecrd serve --name bench --ip 127.0.0.1`"+` on a free loopback port with
a temp data dir, and times the client commands as child processes: wall time
from exec to exit, %d timed runs of each after one untimed warm-up run. Flags:
`+"`-n 20`"+`, `+"`-cas DIR`"+` and `+"`-cas-conf FILE`"+` (the distribution CAs of the second
sandbox, default this machine's; `+"`-cas \"\"`"+` measures the one-CA sandbox only),
`+"`-o FILE`"+` (rewrite this section, between the agentbench markers at the end of
the file, keep the rest). The exit status is non-zero only when the benchmark
cannot run; a missed target is a FAIL row.

`, r.cfg.n)
	fmt.Fprintf(w, "- Date: %s\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "- Machine: %s\n", benchutil.Machine())
	if r.loadStart != "" {
		fmt.Fprintf(w, "- Load average (1 min): %s before the run, %s after\n", r.loadStart, r.loadEnd)
	}
	fmt.Fprintf(w, "- Command: `%s`\n", command)
	fmt.Fprintf(w, "- Device: edgecrd on %s (registry `%s`), client and device on the same machine\n", strings.TrimPrefix(r.joinURL, "https://"), r.registry)
	var labels []string
	for _, s := range r.stores {
		labels = append(labels, s.tmpl.label)
	}
	fmt.Fprintf(w, "- Client: a fresh sandbox per join, as e2e/join_test.go prepares one (a Debian root whose trust store\n"+
		"  update-ca-certificates built, relocated with its flags; DOCKER_CONFIG, EDGECR_CONFIG_DIR, HOME in the\n"+
		"  sandbox; docker-credential-edgecr on PATH), with distribution CAs: %s\n", strings.Join(labels, "; "))
	for _, n := range r.notes {
		fmt.Fprintf(w, "- Note: %s\n", n)
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Command | Sandbox trust store | Median | p90 | Min | Max | Target | |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	statsRow(w, fmt.Sprintf("`docker-credential-edgecr get` (stdin `%s`)", r.registry), "–", r.get, targetGet)
	statsRow(w, "… start-up floor: `docker-credential-edgecr version`", "", r.helperVersion, 0)
	for _, s := range r.stores {
		statsRow(w, fmt.Sprintf("`edgecr join %s --token T --root ROOT`", r.joinURL), short(s.tmpl.label), s.join, targetJoin)
	}
	for _, s := range r.stores {
		statsRow(w, "`edgecr status --root ROOT`", short(s.tmpl.label), s.status, targetStatus)
	}
	for _, s := range r.stores {
		statsRow(w, "`edgecr leave --root ROOT` (after each join)", short(s.tmpl.label), s.leave, 0)
	}
	statsRow(w, "… start-up floor: `edgecr version`", "", r.edgecrVersion, 0)

	fmt.Fprintln(w)
	fmt.Fprintln(w, "Where join's time goes (median of each part over the same runs; the medians need not add up to join's):")
	fmt.Fprintln(w)
	fmt.Fprint(w, "| Part of `edgecr join` |")
	for _, s := range r.stores {
		fmt.Fprintf(w, " %s |", short(s.tmpl.label))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "|---"+strings.Repeat("|---", len(r.stores))+"|")
	for p := range numPhases {
		cells := []string{phaseNames[p]}
		for _, s := range r.stores {
			if s.phasesErr != nil {
				cells = append(cells, "n/a")
				continue
			}
			cells = append(cells, msCell(summarize(s.phases[p]).median))
		}
		row(w, cells...)
	}
	cells := []string{"**update-ca-certificates alone, as join runs it** (on a copy of the root, anchor written)"}
	for _, s := range r.stores {
		cells = append(cells, "**"+msCell(summarize(s.ucaInstall).median)+"**")
	}
	row(w, cells...)
	cells = []string{"update-ca-certificates --fresh alone, as leave runs it (anchor removed)"}
	for _, s := range r.stores {
		cells = append(cells, msCell(summarize(s.ucaFresh).median))
	}
	row(w, cells...)

	fmt.Fprintln(w)
	for _, s := range r.stores {
		j, u := summarize(s.join).median, summarize(s.ucaInstall).median
		l, f := summarize(s.leave).median, summarize(s.ucaFresh).median
		if j > 0 && l > 0 {
			fmt.Fprintf(w, "- %s: update-ca-certificates is %s of join's median %s (%.0f %%), and its --fresh run %s of leave's %s (%.0f %%).\n",
				s.tmpl.label, msCell(u), msCell(j), 100*float64(u)/float64(j), msCell(f), msCell(l), 100*float64(f)/float64(l))
		}
		if s.phasesErr != nil {
			fmt.Fprintf(w, "- %s: no join breakdown: %v.\n", s.tmpl.label, s.phasesErr)
		}
	}
	fmt.Fprintf(w, `
Each join uses a fresh one-use token made with `+"`edgecrd token create -o json`"+`
before the clock starts, joins a fresh copy of the sandbox root and is followed
by `+"`edgecr leave --root ROOT`"+` (timed, untargeted); the benchmark checks that
join added the device CA to the sandbox's bundle and that leave restored the
bundle byte for byte. Join's parts end when it prints the step's last progress
line, stamped as it arrives on a pipe. "update-ca-certificates alone" runs, on
another fresh copy of the root, the command lines trust.PlanStore gives for the
sandbox: `+"`update-ca-certificates RELOC`"+` after writing join's anchor file, and
the same with `+"`--fresh`"+` after removing it, where %s.
The sandbox relocates the tool's hooks directory to an empty one, so no hook
(Debian's ca-certificates-java) runs, as on a machine without Java. status and
get run against one joined sandbox: status checks every hop (hosts file, trust
stores, TLS with the sandbox's bundle, the helper, `+"`GET /v2/`"+`), get reads the
credential store. n=%d per row.
`, relocText(r.ucaInstall), r.cfg.n)
}

// relocText describes the relocation flags of argv (update-ca-certificates
// FLAGS...), for the notes.
func relocText(argv string) string {
	_, flags, ok := strings.Cut(argv, " ")
	if !ok {
		return "no relocation flags"
	}
	return "RELOC is\n`" + flags + "`"
}

// short is a store's label without its parenthesis.
func short(label string) string {
	if i := strings.Index(label, " ("); i >= 0 {
		return label[:i]
	}
	return label
}

// statsRow writes one command's row; target 0 means none.
func statsRow(w io.Writer, name, store string, samples []time.Duration, target time.Duration) {
	s := summarize(samples)
	if s.n == 0 {
		row(w, name, store, "n/a", "", "", "", "", "")
		return
	}
	t, v := "", ""
	if target > 0 {
		t, v = "< "+targetCell(target), verdict(s.median < target)
	}
	row(w, name, store, msCell(s.median), msCell(s.p90), msCell(s.min), msCell(s.max), t, v)
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

func msCell(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func targetCell(d time.Duration) string {
	if d >= time.Second {
		return fmt.Sprintf("%g s", d.Seconds())
	}
	return fmt.Sprintf("%g ms", float64(d)/float64(time.Millisecond))
}
