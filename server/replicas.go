package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

// Replicas of one device on a bucket register in the shared state under
// replicas/<id>: their addresses, port, version, start time and a
// heartbeat, renewed by a compare-and-swap on their own key. A replica is
// live while its heartbeat is younger than ReplicaLiveFor, judged by the
// reader's clock: the bound holds as long as the replicas' clocks agree
// within a few seconds (NTP), which the heartbeat's margin (a live bound
// of several heartbeats) absorbs.
const (
	replicaPrefix = "replicas/"

	// DefaultReplicaPoll is how often a replica renews its heartbeat,
	// re-reads the replica list and polls the serving certificate.
	DefaultReplicaPoll = 2 * time.Second
	// ReplicaLiveFor is how old a heartbeat may be for its replica to
	// count as live: several missed heartbeats, so a slow store round trip
	// does not drop a replica from the certificate or from join answers.
	ReplicaLiveFor = 15 * time.Second
	// replicaForgetAfter is how long a dead replica's record stays (so
	// `edgecrd info` shows it) before a live replica deletes it.
	replicaForgetAfter = time.Hour
	// replicaCallTimeout bounds one round of store calls, so that an
	// object store that does not answer delays the loop, never hangs it.
	replicaCallTimeout = 10 * time.Second
)

// Replica is one serve's record in the shared state.
type Replica struct {
	ID        string    `json:"id"`
	IPs       []string  `json:"ips"`
	Port      int       `json:"port"`
	Version   string    `json:"version,omitempty"`
	Hostname  string    `json:"hostname,omitempty"` // of the machine that runs it
	Instance  string    `json:"instance"`           // random per process: tells a restart from a second serve
	Started   time.Time `json:"started"`
	Heartbeat time.Time `json:"heartbeat"`
}

// Live reports whether r's heartbeat is younger than ReplicaLiveFor at now.
func (r *Replica) Live(now time.Time) bool { return now.Sub(r.Heartbeat) < ReplicaLiveFor }

var replicaIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$`)

// CheckReplicaID reports whether id can name a replica: 1 to 63 letters,
// digits, '.', '_', ':' and '-', starting with a letter or digit (an IPv4
// or IPv6 address qualifies).
func CheckReplicaID(id string) error {
	if !replicaIDRE.MatchString(id) {
		return fmt.Errorf("invalid replica id %q: want 1 to 63 letters, digits, '.', '_', ':' or '-', starting with a letter or digit", id)
	}
	return nil
}

// DefaultReplicaID is the id of a replica that was given none: its first
// advertised address. That is stable across restarts of the node (its
// --ip is configuration), unique among replicas (clients could not tell
// two replicas on one address apart), and says in `edgecrd info` which
// node it is. A host name would be neither: containers get a new one per
// start, and replicas on one machine share it.
func DefaultReplicaID(ips []net.IP) string {
	if len(ips) == 0 {
		return ""
	}
	return ips[0].String()
}

// ListReplicas returns every replica record in store, ordered by id.
// Records that do not parse are skipped: one replica's bad record must not
// hide the others.
func ListReplicas(ctx context.Context, store kv.Store) ([]Replica, error) {
	var out []Replica
	after := ""
	for {
		keys, err := store.List(ctx, replicaPrefix, after, 100)
		if err != nil {
			return nil, fmt.Errorf("listing replicas: %w", err)
		}
		for _, k := range keys {
			b, _, err := store.Get(ctx, k)
			if errors.Is(err, kv.ErrNotFound) {
				continue // deregistered meanwhile
			}
			if err != nil {
				return nil, fmt.Errorf("reading replica %s: %w", k, err)
			}
			var r Replica
			if json.Unmarshal(b, &r) == nil {
				out = append(out, r)
			}
		}
		if len(keys) < 100 {
			break
		}
		after = keys[len(keys)-1]
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// LiveAddresses returns the addresses of the live replicas in rs, each
// once, in the order of rs.
func LiveAddresses(rs []Replica, now time.Time) []string {
	var out []string
	for _, r := range rs {
		if !r.Live(now) {
			continue
		}
		for _, ip := range r.IPs {
			if !slices.Contains(out, ip) {
				out = append(out, ip)
			}
		}
	}
	return out
}

// ErrReplicaInUse: another live serve on another machine holds the replica id.
var ErrReplicaInUse = errors.New("replica id in use")

// replicaSet is this serve's registration and its view of the others.
type replicaSet struct {
	store kv.Store
	log   *slog.Logger
	now   func() time.Time

	// io makes register, heartbeat and deregister one at a time; they
	// hold mu only around the fields, never across a store call, so that
	// a join asking for the live addresses never waits for the store.
	io     sync.Mutex
	mu     sync.Mutex
	self   Replica
	ver    kv.Version // of our own key; "" when not registered
	lost   bool       // another serve took our key over: stop heartbeating
	others map[string]cachedReplica
	list   []Replica // the last list read, ourselves included
}

type cachedReplica struct {
	ver kv.Version
	r   Replica
}

func newReplicaSet(store kv.Store, self Replica, log *slog.Logger, now func() time.Time) (*replicaSet, error) {
	if err := CheckReplicaID(self.ID); err != nil {
		return nil, err
	}
	if len(self.IPs) == 0 {
		return nil, fmt.Errorf("registering replica %s: no addresses (give the replica's own --ip)", self.ID)
	}
	if self.Instance == "" {
		b := make([]byte, 8)
		rand.Read(b)
		self.Instance = hex.EncodeToString(b)
	}
	return &replicaSet{store: store, log: log, now: now, self: self, others: map[string]cachedReplica{}}, nil
}

func (rs *replicaSet) key() string { return replicaPrefix + rs.self.ID }

// register writes our record: create-only, or over the record of a dead
// replica of the same id, or over a live one of the same machine (a
// restart after a crash, whose old record has not expired yet). A live
// record of another machine is ErrReplicaInUse: two nodes configured with
// one address.
func (rs *replicaSet) register(ctx context.Context) error {
	rs.io.Lock()
	defer rs.io.Unlock()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for range 5 {
		now := rs.now().UTC()
		rs.self.Heartbeat = now
		val, _ := json.Marshal(rs.self)
		cur, ver, err := rs.store.Get(ctx, rs.key())
		switch {
		case errors.Is(err, kv.ErrNotFound):
			ver = ""
		case err != nil:
			return fmt.Errorf("registering replica %s: %w", rs.self.ID, err)
		default:
			var old Replica
			if json.Unmarshal(cur, &old) == nil && old.Instance != rs.self.Instance && old.Live(now) && old.Hostname != rs.self.Hostname {
				return fmt.Errorf("registering replica %s: %w by a live serve on %s (heartbeat %s ago): give this serve its own --ip or --replica-id",
					rs.self.ID, ErrReplicaInUse, old.Hostname, now.Sub(old.Heartbeat).Round(time.Second))
			}
		}
		nv, err := rs.store.Put(ctx, rs.key(), val, ver)
		if errors.Is(err, kv.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("registering replica %s: %w", rs.self.ID, err)
		}
		rs.ver, rs.lost = nv, false
		return nil
	}
	return fmt.Errorf("registering replica %s: the record kept changing under us", rs.self.ID)
}

// heartbeat renews our record by CAS. When the CAS loses, someone else
// wrote our key: if it is still ours (same instance) the write is retried,
// otherwise another serve took the id over and we stop heartbeating,
// saying so (we keep serving; clients still reach us by address).
func (rs *replicaSet) heartbeat(ctx context.Context) error {
	rs.io.Lock()
	defer rs.io.Unlock()
	rs.mu.Lock()
	if rs.lost {
		rs.mu.Unlock()
		return nil
	}
	rs.self.Heartbeat = rs.now().UTC()
	val, _ := json.Marshal(rs.self)
	instance, ver := rs.self.Instance, rs.ver
	rs.mu.Unlock()
	setVer := func(v kv.Version) {
		rs.mu.Lock()
		rs.ver = v
		rs.mu.Unlock()
	}
	nv, err := rs.store.Put(ctx, rs.key(), val, ver)
	if err == nil {
		setVer(nv)
		return nil
	}
	if !errors.Is(err, kv.ErrConflict) {
		return fmt.Errorf("renewing replica %s's heartbeat: %w", rs.self.ID, err)
	}
	cur, ver, gerr := rs.store.Get(ctx, rs.key())
	var old Replica
	switch {
	case errors.Is(gerr, kv.ErrNotFound):
		ver = "" // deleted by someone who thought us dead: register again
	case gerr != nil:
		return fmt.Errorf("renewing replica %s's heartbeat: %w", rs.self.ID, gerr)
	case json.Unmarshal(cur, &old) == nil && old.Instance != instance:
		rs.mu.Lock()
		rs.lost = true
		rs.mu.Unlock()
		return fmt.Errorf("replica %s was registered by another serve (on %s, started %s): this one no longer heartbeats; give each replica its own --ip or --replica-id",
			rs.self.ID, old.Hostname, old.Started.Format(time.RFC3339))
	}
	if nv, err = rs.store.Put(ctx, rs.key(), val, ver); err != nil {
		return fmt.Errorf("renewing replica %s's heartbeat: %w", rs.self.ID, err)
	}
	setVer(nv)
	return nil
}

// deregister removes our record (a clean shutdown), if it is still ours.
func (rs *replicaSet) deregister(ctx context.Context) error {
	rs.io.Lock()
	defer rs.io.Unlock()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.ver == "" || rs.lost {
		return nil
	}
	err := rs.store.Delete(ctx, rs.key(), rs.ver)
	rs.ver = ""
	if err != nil && !errors.Is(err, kv.ErrConflict) {
		return fmt.Errorf("deregistering replica %s: %w", rs.self.ID, err)
	}
	return nil
}

// refresh re-reads the replica list, with one conditional read per known
// record (304 while it is unchanged), and deletes records dead for longer
// than replicaForgetAfter.
func (rs *replicaSet) refresh(ctx context.Context) ([]Replica, error) {
	var keys []string
	after := ""
	for {
		page, err := rs.store.List(ctx, replicaPrefix, after, 100)
		if err != nil {
			return nil, fmt.Errorf("listing replicas: %w", err)
		}
		keys = append(keys, page...)
		if len(page) < 100 {
			break
		}
		after = page[len(page)-1]
	}
	now := rs.now()
	next := make(map[string]cachedReplica, len(keys))
	var list []Replica
	for _, k := range keys {
		c, known := rs.others[k]
		val, ver, changed, err := rs.store.GetIfChanged(ctx, k, c.ver)
		if errors.Is(err, kv.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading replica %s: %w", k, err)
		}
		if changed || !known {
			var r Replica
			if err := json.Unmarshal(val, &r); err != nil {
				rs.log.Warn("skipping a replica record that does not parse", "key", k, "err", err)
				continue
			}
			c = cachedReplica{ver: ver, r: r}
		}
		if now.Sub(c.r.Heartbeat) > replicaForgetAfter {
			if err := rs.store.Delete(ctx, k, c.ver); err == nil {
				rs.log.Info("forgot a replica dead for long", "replica", c.r.ID, "heartbeat", c.r.Heartbeat)
			}
			continue
		}
		next[k] = c
		list = append(list, c.r)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	rs.mu.Lock()
	rs.others, rs.list = next, list
	rs.mu.Unlock()
	return list, nil
}

// snapshot is the replica list as last read.
func (rs *replicaSet) snapshot() []Replica {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return slices.Clone(rs.list)
}

// liveAddresses are the addresses of every live replica as last read, ours
// first (the replica a client just reached is one it can certainly reach).
func (rs *replicaSet) liveAddresses() []string {
	rs.mu.Lock()
	self := rs.self
	list := slices.Clone(rs.list)
	rs.mu.Unlock()
	out := slices.Clone(self.IPs)
	for _, a := range LiveAddresses(list, rs.now()) {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}
