package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Results of an operation.
const (
	resultOK       = "ok"
	resultRefused  = "refused (expected)"
	resultInWindow = "failed in a kill window"
	resultFailed   = "FAILED"
)

// slow is the slowest successful operation of a kind.
type slow struct {
	took time.Duration
	at   time.Time
}

type stats struct {
	mu       sync.Mutex
	counts   map[string]map[string]int // kind -> result -> n
	examples []string                  // the first failures outside kill windows
	starts   []time.Duration           // start to first /v2/ answer, first start and each restart
	slowest  map[string]slow           // kind -> slowest successful operation
	samples  []sample                  // RSS and open fds, every -sample-every
	fdSlack  float64                   // see fdSlack; more on a bucket
}

func newStats() *stats {
	return &stats{counts: map[string]map[string]int{}, slowest: map[string]slow{}, fdSlack: fdSlack}
}

// refused records an expected refusal: a push over the quota, a join with
// a removed or used-up token.
func (s *stats) refused(kind string, start time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counts[kind] == nil {
		s.counts[kind] = map[string]int{}
	}
	s.counts[kind][resultRefused]++
}

func (s *stats) record(kind string, l *ledger, start time.Time, err error) {
	result := resultOK
	switch {
	case err == nil:
	case !isWrong(err) && l.inWindow(start, time.Now()):
		result = resultInWindow
	default:
		result = resultFailed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counts[kind] == nil {
		s.counts[kind] = map[string]int{}
	}
	s.counts[kind][result]++
	if took := time.Since(start); result == resultOK && took > s.slowest[kind].took {
		s.slowest[kind] = slow{took, start}
	}
	if result == resultFailed && len(s.examples) < 40 {
		s.examples = append(s.examples, fmt.Sprintf("%s at %s: %v", kind, start.Format("15:04:05.000"), err))
	}
}

func (s *stats) startup(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.starts = append(s.starts, d)
}

// kill records a SIGKILL and restart of edgecrd ("kill+restart") or of
// MinIO ("kill+restart minio"); restart is the time to first answer.
func (s *stats) kill(kind string, restart time.Duration) {
	if kind == "kill+restart" {
		s.startup(restart)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counts[kind] == nil {
		s.counts[kind] = map[string]int{}
	}
	s.counts[kind][resultOK]++
	if restart > s.slowest[kind].took {
		s.slowest[kind] = slow{restart, time.Now()}
	}
}

// checked records a check after a restart: the final check's rules at a
// quiescent moment of the run.
func (s *stats) checked(c *check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counts["check after restart"] == nil {
		s.counts["check after restart"] = map[string]int{}
	}
	if c.ok() {
		s.counts["check after restart"][resultOK]++
		return
	}
	s.counts["check after restart"][resultFailed]++
	for _, p := range c.problems {
		if len(s.examples) < 40 {
			s.examples = append(s.examples, fmt.Sprintf("check after restart %d: %s", len(s.starts)-1, p))
		}
	}
}

func (s *stats) failures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.counts {
		n += m[resultFailed]
	}
	return n
}

// check is the end state against the ledger.
type check struct {
	listed       int      // tags tags/list returned
	resolved     int      // of which resolved to a whole image (every blob verified)
	acknowledged int      // acknowledged tags in the ledger
	verified     int      // of which pulled whole with the acknowledged digest
	uncertain    int      // tags whose last operation failed in a kill window
	problems     []string // unresolvable, lost, wrong or resurrected tags
	lost         int
	unresolvable int
	repairs      map[string]int // edgecr_tag_repairs_total by reason after the last restart
	fleet        *fleetCheck    // clients and tokens; nil without the fleet
}

// fullCheck is the images' check and, with a fleet, its identities' and
// tokens'; every problem of either fails it.
func fullCheck(ctx context.Context, cl *client, l *ledger, f *fleet) *check {
	c := finalCheck(ctx, cl, l)
	if f != nil {
		c.fleet = f.check(ctx)
		c.problems = append(c.problems, c.fleet.problems...)
	}
	return c
}

func (c *check) ok() bool { return len(c.problems) == 0 }

func finalCheck(ctx context.Context, cl *client, l *ledger) *check {
	c := &check{}
	led := l.snapshot()
	repos := make([]string, 0, len(led))
	for r := range led {
		repos = append(repos, r)
	}
	sort.Strings(repos)
	for _, repo := range repos {
		want := led[repo]
		listed, err := cl.tags(ctx, repo)
		if err != nil {
			c.problems = append(c.problems, fmt.Sprintf("%s: listing tags: %v", repo, err))
			continue
		}
		for _, tag := range listed {
			c.listed++
			got, err := cl.pull(ctx, repo, tag)
			if err != nil {
				c.unresolvable++
				c.problems = append(c.problems, fmt.Sprintf("%s:%s is listed but does not pull whole: %v", repo, tag, err))
				continue
			}
			c.resolved++
			s, ok := want[tag]
			switch {
			case !ok:
				c.problems = append(c.problems, fmt.Sprintf("%s:%s is listed, but its deletion was acknowledged (or it was never acknowledged)", repo, tag))
			case s.possible != nil && !s.possible[got]:
				c.problems = append(c.problems, fmt.Sprintf("%s:%s resolves to %s, none of its possible digests", repo, tag, got))
			case s.possible == nil && got != s.digest:
				c.problems = append(c.problems, fmt.Sprintf("%s:%s resolves to %s, acknowledged %s", repo, tag, got, s.digest))
			}
		}
		for tag, s := range want {
			if s.possible != nil {
				c.uncertain++
				if !s.possible[""] && !slices.Contains(listed, tag) {
					c.lost++
					c.problems = append(c.problems, fmt.Sprintf("%s:%s is gone, though every outcome of its last operation keeps it", repo, tag))
				}
				continue
			}
			c.acknowledged++
			if !slices.Contains(listed, tag) {
				c.lost++
				c.problems = append(c.problems, fmt.Sprintf("%s:%s (%s) was acknowledged and is not listed", repo, tag, s.digest))
				continue
			}
			if got, err := cl.pull(ctx, repo, tag); err == nil && got == s.digest {
				c.verified++
			}
		}
	}
	return c
}

func (s *stats) print(w io.Writer, c *check, o options) {
	s.mu.Lock()
	defer s.mu.Unlock()
	quota := o.quota
	if quota == "" {
		quota = "none"
	}
	fmt.Fprintf(w, "soak: %s on %s, %d workers + the fleet, SIGKILL every ~%s, edgecrd gc --grace %s --delete-untagged every %s, quota %s\n\n",
		o.duration, o.storageName(), o.workers, o.killEvery, o.gcGrace, o.gcEvery, quota)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "operation\t%s\t%s\t%s\t%s\tslowest ok\t\n", resultOK, resultRefused, resultInWindow, resultFailed)
	kinds := make([]string, 0, len(s.counts))
	for k := range s.counts {
		kinds = append(kinds, k)
	}
	order := []string{"push", "pull", "pull uncertain", "move-tag", "delete-tag", "delete-digest", "gc",
		"token-create", "join", "join (dead token)", "leave", "revoke", "token-rm", "revocation applied", "auth-probe",
		"kill+restart", "kill+restart minio", "check after restart"}
	slices.SortFunc(kinds, func(a, b string) int { return slices.Index(order, a) - slices.Index(order, b) })
	total := map[string]int{}
	for _, k := range kinds {
		m := s.counts[k]
		slowest := "-"
		if sl, ok := s.slowest[k]; ok {
			slowest = fmt.Sprintf("%s at %s", sl.took.Round(time.Millisecond), sl.at.Format("15:04:05"))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t\n", k, m[resultOK], m[resultRefused], m[resultInWindow], m[resultFailed], slowest)
		for r, n := range m {
			total[r] += n
		}
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t\t\n", total[resultOK], total[resultRefused], total[resultInWindow], total[resultFailed])
	tw.Flush()

	starts := slices.Clone(s.starts)
	slices.Sort(starts)
	if len(starts) > 0 {
		fmt.Fprintf(w, "\nstart to first /v2/ answer: median %s, max %s over %d starts\n",
			starts[len(starts)/2].Round(time.Millisecond), starts[len(starts)-1].Round(time.Millisecond), len(starts))
	}
	fmt.Fprintf(w, "\nfinal check, right after the last SIGKILL and restart:\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "tags listed\t%d\t\n", c.listed)
	fmt.Fprintf(tw, "  of which resolve to a whole image\t%d\t\n", c.resolved)
	fmt.Fprintf(tw, "tags acknowledged (ledger)\t%d\t\n", c.acknowledged)
	fmt.Fprintf(tw, "  of which pull whole with their digest\t%d\t\n", c.verified)
	fmt.Fprintf(tw, "tags left uncertain by a kill\t%d\t\n", c.uncertain)
	fmt.Fprintf(tw, "lost\t%d\t\n", c.lost)
	fmt.Fprintf(tw, "unresolvable\t%d\t\n", c.unresolvable)
	fmt.Fprintf(tw, "repairs on start (edgecr_tag_repairs_total)\t%s\t\n", formatRepairs(c.repairs))
	fmt.Fprintf(tw, "pulls, every blob and manifest digest verified\t%d\t\n", s.counts["pull"][resultOK])
	if f := c.fleet; f != nil {
		fmt.Fprintf(tw, "clients joined (ledger)\t%d\t\n", f.clients)
		fmt.Fprintf(tw, "  live / revoked / uncertain\t%d / %d / %d\t\n", f.active, f.revoked, f.uncertain)
		fmt.Fprintf(tw, "  credentials probed (live 200, revoked 401)\t%d\t\n", f.probes)
		fmt.Fprintf(tw, "tokens created (ledger) / removed\t%d / %d\t\n", f.tokens, f.removed)
		fmt.Fprintf(tw, "identities or tokens lost\t%d\t\n", f.lost)
		fmt.Fprintf(tw, "identities or tokens resurrected\t%d\t\n", f.resurrected)
	}
	tw.Flush()
	flat := s.flatness()
	if len(flat) > 0 {
		fmt.Fprintf(w, "\nRSS and open fds, sampled every %s (flat: the last quarter's mean within %d %% of the first's (RSS: or within %d MiB; fds: or within %d), over the run and within each lifetime of >= 8 samples):\n",
			o.sampleEvery, int(flatTolerance*100), rssSlack>>20, int(s.fdSlack))
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "process\tsamples\tlifetimes\tRSS first q\tRSS last q\tRSS max\tfds first q\tfds last q\tfds max\tflat\t\n")
		for _, f := range flat {
			verdict := "yes"
			switch {
			case !f.judged:
				verdict = "(not judged)"
			case f.n < minFlatSamples:
				verdict = "too few samples"
			case !f.flat:
				verdict = "NO"
			}
			q := []string{mib(f.rssFirst), mib(f.rssLast), fmt.Sprintf("%.1f", f.fdsFirst), fmt.Sprintf("%.1f", f.fdsLast)}
			if f.n < minFlatSamples {
				q = []string{"-", "-", "-", "-"} // no quarters computed
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t\n", f.proc, f.n, f.lifetimes,
				q[0], q[1], mib(float64(f.rssMax)), q[2], q[3], f.fdsMax, verdict)
		}
		tw.Flush()
		for _, f := range flat {
			for _, n := range f.notFlat {
				fmt.Fprintf(w, "  not flat: %s\n", n)
			}
		}
	}
	if len(s.examples) > 0 {
		fmt.Fprintf(w, "\nfailures outside kill windows:\n  %s\n", strings.Join(s.examples, "\n  "))
	}
	if len(c.problems) > 0 {
		fmt.Fprintf(w, "\nproblems:\n  %s\n", strings.Join(c.problems, "\n  "))
	}
	result := "PASS"
	notFlat := 0
	for _, f := range flat {
		notFlat += len(f.notFlat)
	}
	if total[resultFailed] > 0 || len(c.problems) > 0 || notFlat > 0 {
		result = "FAIL"
	}
	lost, resurrected := c.lost, 0
	if c.fleet != nil {
		lost += c.fleet.lost
		resurrected = c.fleet.resurrected
	}
	fmt.Fprintf(w, "\n%s: %d failures outside kill windows, %d lost, %d resurrected, %d unresolvable, %d not flat\n",
		result, total[resultFailed], lost, resurrected, c.unresolvable, notFlat)
}

// flatness judges the samples of each process (edgecrd first). MinIO's
// are shown, not judged: it is the test's object store, whose caches grow
// as the bucket does, not the product.
func (s *stats) flatness() []*flatness {
	var out []*flatness
	for _, p := range []string{"edgecrd", "minio"} {
		if f := checkFlat(p, s.samples, s.fdSlack); f.n > 0 {
			if p == "minio" {
				f.judged, f.flat, f.notFlat = false, true, nil
			}
			out = append(out, f)
		}
	}
	return out
}

// passed is the run's verdict, as print states it.
func (s *stats) passed(c *check) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.flatness() {
		if !f.flat {
			return false
		}
	}
	for _, m := range s.counts {
		if m[resultFailed] > 0 {
			return false
		}
	}
	return c.ok()
}

// formatRepairs prints the repair counts by reason, e.g. "1 (no_current_link 1)".
func formatRepairs(m map[string]int) string {
	if m == nil {
		return "unreadable"
	}
	total, parts := 0, []string{}
	reasons := make([]string, 0, len(m))
	for r := range m {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		total += m[r]
		if m[r] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", r, m[r]))
		}
	}
	if len(parts) == 0 {
		return fmt.Sprint(total)
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}
