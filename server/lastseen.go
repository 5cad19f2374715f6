package server

import (
	"encoding/json"
	"log/slog"
	"maps"
	"sync"
	"time"
)

const lastSeenFile = "lastseen.json"

// lastSeen remembers when each identity last authenticated. Requests only
// touch a map; the server writes lastseen.json now and then, so that
// `edgecrd clients ls` (another process) can show it without a write per
// request.
type lastSeen struct {
	path string
	log  *slog.Logger

	mu    sync.Mutex
	seen  map[string]time.Time
	dirty bool
}

func newLastSeen(st *State, log *slog.Logger) *lastSeen {
	l := &lastSeen{path: st.Path(lastSeenFile), log: log, seen: map[string]time.Time{}}
	if m, err := readLastSeen(l.path); err == nil {
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
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := writeFileAtomic(l.path, append(b, '\n'), 0o600); err != nil {
		l.log.Warn("saving last-seen times", "err", err)
	}
}

func readLastSeen(path string) (map[string]time.Time, error) {
	b, ok, err := readOptional(path)
	m := map[string]time.Time{}
	if err != nil || !ok {
		return m, err
	}
	// A damaged file only loses "last seen" times: not worth refusing to start.
	if err := json.Unmarshal(b, &m); err != nil {
		return map[string]time.Time{}, nil
	}
	return m, nil
}

// LastSeen returns the last-seen times saved by the running server.
func (s *State) LastSeen() (map[string]time.Time, error) { return readLastSeen(s.Path(lastSeenFile)) }
