// Package migrate moves a single-node edgecrd device (a data dir on local
// disk) into an S3-compatible bucket, where replicas serve it: the images
// through the storage drivers (filesystem to s3, same paths), every state
// file of the data dir into the shared state store under the same name.
//
// It is resumable and verifying: a run that was interrupted is run again
// and skips what the bucket already holds and verifies, and it never
// changes the data dir.
//
// The bucket's state has two markers. kv's "meta/device" names the device
// (written create-only by the store's Check, so a bucket holding another
// device is refused before anything is copied); "meta/migration" is
// written create-only before the first copy and marked finished after the
// last one. A bucket whose marker says "this device, not finished" is this
// device's interrupted migration: what differs from the data dir there is
// replaced by the data dir's version (nothing else can have written it).
// Anywhere else a difference is an error that names the key or the path:
// after the migration finished, replicas own the bucket's copy.
package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"

	// distribution's s3-aws storage driver, registered as "s3".
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"

	"github.com/edgecr/edgecr/server"
	"github.com/edgecr/edgecr/server/kv"
)

// MarkerKey is the state key that records a migration into the bucket.
const MarkerKey = "meta/migration"

// Marker is the value of MarkerKey.
type Marker struct {
	Device   string     `json:"device"`
	CA       string     `json:"ca"`     // the CA's fingerprint
	Source   string     `json:"source"` // host:data dir, for the operator
	Started  time.Time  `json:"started"`
	Finished *time.Time `json:"finished,omitempty"`
}

// Options configure one migration.
type Options struct {
	DataDir string
	To      *kv.S3Location
	// Progress receives a line every ProgressEvery (zero: 2 s) and at
	// the end of each phase; nil discards.
	Progress      io.Writer
	ProgressEvery time.Duration
	// Workers copy image files in parallel (zero: 4).
	Workers int
	// S3 overrides the state store's configuration (tests count
	// requests); zero value: To.KVConfig().
	S3 *kv.S3Config
	// Now is the clock of the marker (nil: time.Now).
	Now func() time.Time
}

// Report is what a migration did.
type Report struct {
	Device  string // the device id the bucket is marked with
	Resumed bool   // the bucket held this device's unfinished migration
	// Again: the bucket held this device's finished migration; this run
	// verified it and copied only what was missing.
	Again bool

	Objects      int64 // image files copied
	Bytes        int64
	Skipped      int64 // image files already in the bucket and verified
	SkippedBytes int64
	Replaced     int64 // image files that differed, replaced (resumed runs only)

	StateCopied   []string // state keys written
	StateSkipped  []string // state keys already there with the same content
	StateReplaced []string // state keys that differed, replaced (resumed runs only)
	Ignored       []string // entries of the data dir that are not state (not copied)
}

// DeviceID is the id the bucket's meta/device marker holds for a device:
// "<name>.<domain>" in lower case, the zone its CA is constrained to, which
// is what serve and init on a bucket write and check (server's deviceID).
// Two devices may share a name, so the migration also compares CAs.
func DeviceID(st *server.State) string {
	return strings.ToLower(st.Device.Name + "." + st.Device.Domain)
}

// initializedKey is what server writes on a bucket when a first
// initialisation has finished; a migrated device is one.
const initializedKey = "meta/initialized"

// Errors a caller may tell apart.
var (
	ErrNotDataDir = errors.New("not an edgecrd data dir")
	ErrConflict   = errors.New("the bucket already holds different content")
)

// Run migrates o.DataDir into o.To. It holds the data dir's owner lock
// (no serve or init meanwhile) without writing to it.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.To == nil {
		return nil, errors.New("migrating: no destination")
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.ProgressEvery == 0 {
		o.ProgressEvery = 2 * time.Second
	}
	if o.Workers == 0 {
		o.Workers = 4
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	dir := o.DataDir
	if err := checkDataDir(dir); err != nil {
		return nil, err
	}
	lock, err := server.HoldDataDir(dir)
	if err != nil {
		if errors.Is(err, server.ErrInUse) {
			return nil, fmt.Errorf("%w: stop it first (migrate copies a device that is not running)", err)
		}
		return nil, err
	}
	defer lock.Unlock()
	st, err := server.Load(dir)
	if err != nil {
		return nil, err
	}
	rep := &Report{Device: DeviceID(st)}

	cfg := o.To.KVConfig()
	if o.S3 != nil {
		cfg = *o.S3
	}
	store, err := kv.OpenS3(ctx, cfg, rep.Device)
	if err != nil {
		if errors.Is(err, kv.ErrOtherDevice) {
			return nil, fmt.Errorf("migrating %s to %s: %w (choose another bucket or prefix)", dir, o.To, err)
		}
		return nil, fmt.Errorf("migrating %s: %w", dir, err)
	}
	if err := sameCA(ctx, store, st); err != nil {
		return nil, fmt.Errorf("migrating %s to %s: %w", dir, o.To, err)
	}
	m, mver, err := startMarker(ctx, store, rep.Device, st.CA.Fingerprint(), dir, o.Now())
	if err != nil {
		return nil, err
	}
	rep.Resumed = m.Finished == nil && mver != ""
	rep.Again = m.Finished != nil
	// Replacing what differs is right only when the bucket is this
	// device's unfinished migration, started by an earlier run: whatever
	// else differs was not written by this device's migration.
	replace := rep.Resumed

	src, err := filesystem.FromParameters(map[string]any{"rootdirectory": filepath.Join(dir, "registry")})
	if err != nil {
		return nil, fmt.Errorf("opening the image storage of %s: %w", dir, err)
	}
	dst, err := factory.Create(ctx, "s3", o.To.DriverParameters())
	if err != nil {
		return nil, fmt.Errorf("opening the image storage in %s: %w", o.To.Bucket, err)
	}
	if err := copyImages(ctx, src, dst, replace, o, rep); err != nil {
		return rep, err
	}
	if err := copyState(ctx, dir, store, replace, o, rep); err != nil {
		return rep, err
	}
	if _, err := store.Put(ctx, initializedKey, []byte(o.Now().UTC().Format(time.RFC3339)+"\n"), ""); err != nil && !errors.Is(err, kv.ErrConflict) {
		return rep, fmt.Errorf("finishing the migration: writing %s: %w", initializedKey, err)
	}
	if m.Finished == nil {
		now := o.Now().UTC()
		m.Finished = &now
		b, _ := json.Marshal(m)
		ver := mver
		if ver == "" {
			_, ver, err = store.Get(ctx, MarkerKey)
			if err != nil {
				return rep, fmt.Errorf("finishing the migration: %w", err)
			}
		}
		if _, err := store.Put(ctx, MarkerKey, b, ver); err != nil {
			return rep, fmt.Errorf("finishing the migration: writing %s: %w", MarkerKey, err)
		}
	}
	return rep, nil
}

// checkDataDir tells a missing dir, a file and a dir that is not (or not
// yet completely) a data dir apart before anything else.
func checkDataDir(dir string) error {
	if dir == "" {
		return errors.New("migrating: no --data-dir")
	}
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("migrating: data dir %s does not exist", dir)
	}
	if err != nil {
		return fmt.Errorf("migrating: data dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("migrating: %s is not a directory: %w", dir, ErrNotDataDir)
	}
	if _, err := os.Stat(filepath.Join(dir, "device.json")); err != nil {
		return fmt.Errorf("migrating: %s has no device.json: %w", dir, ErrNotDataDir)
	}
	if _, err := os.Lstat(filepath.Join(dir, ".init-incomplete")); err == nil {
		return fmt.Errorf("migrating: %s was never completely initialised (run edgecrd init on it first): %w", dir, ErrNotDataDir)
	}
	return nil
}

// startMarker reads the migration marker, creating it when absent. ver
// is "" when this run created it.
func startMarker(ctx context.Context, store kv.Store, device, ca, dir string, now time.Time) (*Marker, kv.Version, error) {
	host, _ := os.Hostname()
	abs, _ := filepath.Abs(dir)
	m := &Marker{Device: device, CA: ca, Source: host + ":" + abs, Started: now.UTC()}
	b, _ := json.Marshal(m)
	_, err := store.Put(ctx, MarkerKey, b, "")
	if err == nil {
		return m, "", nil
	}
	if !errors.Is(err, kv.ErrConflict) {
		return nil, "", fmt.Errorf("starting the migration: writing %s: %w", MarkerKey, err)
	}
	b, ver, err := store.Get(ctx, MarkerKey)
	if err != nil {
		return nil, "", fmt.Errorf("starting the migration: reading %s: %w", MarkerKey, err)
	}
	var have Marker
	if err := json.Unmarshal(b, &have); err != nil {
		return nil, "", fmt.Errorf("starting the migration: %s in the bucket does not parse: %w", MarkerKey, err)
	}
	if have.Device != device || have.CA != ca {
		return nil, "", fmt.Errorf("starting the migration: %s names device %q with CA %s, not this one (%s, CA %s): %w", MarkerKey, have.Device, have.CA, device, ca, kv.ErrOtherDevice)
	}
	return &have, ver, nil
}

// sameCA refuses a bucket whose state has another CA than the data dir's:
// another device of the same name (the meta/device marker holds only the
// name), before anything is copied.
func sameCA(ctx context.Context, store kv.Store, st *server.State) error {
	have, _, err := store.Get(ctx, "ca.crt")
	if errors.Is(err, kv.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading ca.crt in the bucket: %w", err)
	}
	if string(have) != string(st.CA.PEM) {
		return fmt.Errorf("the bucket holds a device named %s with another CA: %w", DeviceID(st), kv.ErrOtherDevice)
	}
	return nil
}

// progress counts and prints.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	every time.Duration
	last  time.Time
	rep   *Report
	total int64 // image files found so far
}

func (p *progress) add(f func(r *Report)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p.rep)
	if time.Since(p.last) >= p.every {
		p.printLocked("images")
	}
}

func (p *progress) printLocked(what string) {
	r := p.rep
	fmt.Fprintf(p.w, "%s: %d/%d objects done: %d copied (%s), %d already there and verified (%s)",
		what, r.Objects+r.Skipped, p.total, r.Objects, server.FormatSize(r.Bytes), r.Skipped, server.FormatSize(r.SkippedBytes))
	if r.Replaced > 0 {
		fmt.Fprintf(p.w, ", %d replaced", r.Replaced)
	}
	fmt.Fprintln(p.w)
	p.last = time.Now()
}

// stateKeys are the data dir's state files: its regular files at the top
// and one level down (identities/XX.json, tokens/<id>.json), except lock,
// temp and marker files (names starting with "."). Ignored are the other
// entries (registry/ is the images).
func stateKeys(dir string) (keys, ignored []string, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("reading data dir %s: %w", dir, err)
	}
	var nested []string
	for _, e := range ents {
		n := e.Name()
		switch {
		case strings.HasPrefix(n, "."):
		case n == "registry" && e.IsDir():
		case e.IsDir() && kv.ValidKey(n) == nil:
			sub, err := os.ReadDir(filepath.Join(dir, n))
			if err != nil {
				return nil, nil, fmt.Errorf("reading data dir %s: %w", dir, err)
			}
			for _, f := range sub {
				k := n + "/" + f.Name()
				switch {
				case strings.HasPrefix(f.Name(), "."):
				case !f.Type().IsRegular() || kv.ValidKey(k) != nil:
					ignored = append(ignored, k)
				default:
					nested = append(nested, k)
				}
			}
		case !e.Type().IsRegular():
			ignored = append(ignored, n)
		case kv.ValidKey(n) != nil:
			ignored = append(ignored, n)
		default:
			keys = append(keys, n)
		}
	}
	// The nested keys go first (identities.json names them: the shards
	// must be there before it), device.json last: a bucket that has it has
	// all the rest, so a replica started on a half-migrated bucket does
	// not take it for a complete device.
	slices.Sort(nested)
	slices.SortStableFunc(keys, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "device.json":
			return 1
		case b == "device.json":
			return -1
		}
		return strings.Compare(a, b)
	})
	return append(nested, keys...), ignored, nil
}

// copyState writes every state file into the store, create-only.
func copyState(ctx context.Context, dir string, store kv.Store, replace bool, o Options, rep *Report) error {
	keys, ignored, err := stateKeys(dir)
	if err != nil {
		return err
	}
	rep.Ignored = ignored
	for _, k := range keys {
		val, err := os.ReadFile(filepath.Join(dir, k))
		if err != nil {
			return fmt.Errorf("migrating state: reading %s: %w", k, err)
		}
		if rep.Again && !replace {
			// A finished migration's bucket lacking a key the data dir
			// has: the data dir moved on since (a token, a client). Its
			// replicas own the state now; nothing is added behind them.
			if _, _, err := store.Get(ctx, k); errors.Is(err, kv.ErrNotFound) {
				return fmt.Errorf("migrating state: the data dir has %s, which the bucket does not (the migration finished before, and the data dir changed since): %w", k, ErrConflict)
			} else if err != nil {
				return fmt.Errorf("migrating state: reading %s back: %w", k, err)
			}
		}
		_, err = store.Put(ctx, k, val, "")
		if err == nil {
			rep.StateCopied = append(rep.StateCopied, k)
			continue
		}
		if !errors.Is(err, kv.ErrConflict) {
			return fmt.Errorf("migrating state: writing %s: %w", k, err)
		}
		have, ver, err := store.Get(ctx, k)
		if errors.Is(err, kv.ErrNotFound) { // deleted in between: try again next run
			return fmt.Errorf("migrating state: %s changed in the bucket while copying it; run migrate again", k)
		}
		if err != nil {
			return fmt.Errorf("migrating state: reading %s back: %w", k, err)
		}
		switch {
		case string(have) == string(val):
			rep.StateSkipped = append(rep.StateSkipped, k)
		case replace:
			if _, err := store.Put(ctx, k, val, ver); err != nil {
				return fmt.Errorf("migrating state: replacing %s: %w", k, err)
			}
			rep.StateReplaced = append(rep.StateReplaced, k)
		default:
			return fmt.Errorf("migrating state: key %s in the bucket differs from the data dir's file (the migration finished before, and replicas may have changed it since): %w", k, ErrConflict)
		}
	}
	fmt.Fprintf(o.Progress, "state: %d keys copied, %d already there and identical, %d replaced\n",
		len(rep.StateCopied), len(rep.StateSkipped), len(rep.StateReplaced))
	return nil
}
