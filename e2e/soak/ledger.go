package main

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// ledger is what the server acknowledged, per repository and tag. An
// operation that failed inside a kill window may or may not have reached
// the disk: its tag is then uncertain, with the digests it may hold ("" =
// absent), until an acknowledged operation on the tag settles it.
type ledger struct {
	mu   sync.Mutex
	tags map[string]map[string]tagState // repo -> tag -> state
	// windows are the intervals in which the server was being killed or
	// restarted: from just before SIGKILL until /v2/ answered again.
	windows []window
	open    *window
}

type tagState struct {
	digest   string          // acknowledged; "" with uncertain set
	possible map[string]bool // non-nil: uncertain, one of these ("" = absent)
}

type window struct{ from, to time.Time }

func newLedger() *ledger { return &ledger{tags: map[string]map[string]tagState{}} }

// killStarts and killEnds bracket a kill and restart.
func (l *ledger) killStarts(t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open = &window{from: t}
}

func (l *ledger) killEnds(t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open != nil {
		l.open.to = t
		l.windows = append(l.windows, *l.open)
		l.open = nil
	}
}

// inWindow reports whether [from, to] overlaps a kill window (an open
// one included).
func (l *ledger) inWindow(from, to time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open != nil && !to.Before(l.open.from) {
		return true
	}
	for _, w := range l.windows {
		if !to.Before(w.from) && !from.After(w.to) {
			return true
		}
	}
	return false
}

func (l *ledger) repo(r string) map[string]tagState {
	m := l.tags[r]
	if m == nil {
		m = map[string]tagState{}
		l.tags[r] = m
	}
	return m
}

// get is the acknowledged digest of a tag; false when the tag is absent or
// uncertain.
func (l *ledger) get(repo, tag string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.tags[repo][tag]
	return s.digest, ok && s.possible == nil
}

// certainTags are the repository's tags with an acknowledged digest.
func (l *ledger) certainTags(repo string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for t, s := range l.tags[repo] {
		if s.possible == nil {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// tagged records an acknowledged push or tag move.
func (l *ledger) tagged(repo, tag, d string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.repo(repo)[tag] = tagState{digest: d}
}

// untagged records an acknowledged tag deletion.
func (l *ledger) untagged(repo, tag string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.repo(repo), tag)
}

// deletedDigest records an acknowledged DELETE by digest: every tag of the
// repository on it goes, and an uncertain tag that may have been on it may
// now be absent instead.
func (l *ledger) deletedDigest(repo, d string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.repo(repo)
	for t, s := range m {
		switch {
		case s.possible == nil && s.digest == d:
			delete(m, t)
		case s.possible[d]:
			delete(s.possible, d)
			s.possible[""] = true
		}
	}
}

// maybe records that a tag, after an operation with an unknown outcome,
// holds what it held before or one of outcomes.
func (l *ledger) maybe(repo, tag string, outcomes ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.repo(repo)
	s, ok := m[tag]
	p := map[string]bool{}
	switch {
	case !ok:
		p[""] = true
	case s.possible != nil:
		p = s.possible
	default:
		p[s.digest] = true
	}
	for _, o := range outcomes {
		p[o] = true
	}
	m[tag] = tagState{possible: p}
}

// maybeDeletedDigest records a DELETE by digest with an unknown outcome.
func (l *ledger) maybeDeletedDigest(repo, d string) {
	l.mu.Lock()
	var tags []string
	for t, s := range l.repo(repo) {
		if s.possible == nil && s.digest == d || s.possible[d] {
			tags = append(tags, t)
		}
	}
	l.mu.Unlock()
	for _, t := range tags {
		l.maybe(repo, t, "")
	}
}

// snapshot copies the ledger for the final check.
func (l *ledger) snapshot() map[string]map[string]tagState {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]map[string]tagState{}
	for r, m := range l.tags {
		out[r] = map[string]tagState{}
		for t, s := range m {
			out[r][t] = s
		}
	}
	return out
}

// uncertainTags are the repository's tags whose state is unknown.
func (l *ledger) uncertainTags(repo string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for t, s := range l.tags[repo] {
		if s.possible != nil {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// settle records what a read of an uncertain tag found, d ("" = absent):
// an error when d is none of its possible states. The repository's worker
// is the only writer of its tags, so what it reads is the tag's state.
func (l *ledger) settle(repo, tag, d string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.repo(repo)
	s, ok := m[tag]
	if !ok || s.possible == nil {
		return nil
	}
	if !s.possible[d] {
		return fmt.Errorf("%s:%s holds %q, none of its possible states %v", repo, tag, d, keys(s.possible))
	}
	if d == "" {
		delete(m, tag)
	} else {
		m[tag] = tagState{digest: d}
	}
	return nil
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
