package server

import (
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

const lastSeenFile = "lastseen.json"

// lastSeen remembers when each identity last authenticated. Requests only
// touch a map; the server writes lastseen.json now and then, so that
// `edgecrd clients ls` (another process) can show it without a write per
// request. Replicas on one bucket merge theirs into the one document
// (latest time wins, compare-and-swap).
type lastSeen struct {
	st  *State
	log *slog.Logger

	mu    sync.Mutex
	seen  map[string]time.Time
	dirty bool
}

func newLastSeen(st *State, log *slog.Logger) *lastSeen {
	l := &lastSeen{st: st, log: log, seen: map[string]time.Time{}}
	if m, _, err := st.readLastSeen(); err == nil {
		l.seen = m
	}
	return l
}

func (l *lastSeen) mark(id string, now time.Time) {
	l.mu.Lock()
	if now.Sub(l.seen[id]) >= time.Second {
		l.seen[id] = now.UTC().Truncate(time.Second)
		l.dirty = true
	}
	l.mu.Unlock()
}

// snapshot is every last-seen time this server knows, saved or not.
func (l *lastSeen) snapshot() map[string]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.seen)
}

func (l *lastSeen) flush() {
	l.mu.Lock()
	if !l.dirty {
		l.mu.Unlock()
		return
	}
	m := maps.Clone(l.seen)
	l.dirty = false
	l.mu.Unlock()
	for attempt := 0; ; attempt++ {
		err := l.merge(m)
		if err == nil {
			return
		}
		if !errors.Is(err, kv.ErrConflict) || attempt >= 10 {
			l.log.Warn("saving last-seen times", "err", err)
			return
		}
	}
}

// merge writes m into lastseen.json, keeping later times found there.
func (l *lastSeen) merge(m map[string]time.Time) error {
	stored, ver, err := l.st.readLastSeen()
	if err != nil {
		return err
	}
	for id, t := range stored {
		if t.After(m[id]) {
			m[id] = t
		}
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	_, err = l.st.put(lastSeenFile, append(b, '\n'), ver)
	return err
}

// readLastSeen returns the saved times and the document's version.
func (s *State) readLastSeen() (map[string]time.Time, kv.Version, error) {
	b, ver, ok, err := s.get(lastSeenFile)
	m := map[string]time.Time{}
	if err != nil || !ok {
		return m, "", err
	}
	// A damaged file only loses "last seen" times: not worth refusing to start.
	if err := json.Unmarshal(b, &m); err != nil {
		return map[string]time.Time{}, ver, nil
	}
	return m, ver, nil
}

// LastSeen returns the last-seen times saved by the running server(s).
func (s *State) LastSeen() (map[string]time.Time, error) {
	m, _, err := s.readLastSeen()
	return m, err
}
