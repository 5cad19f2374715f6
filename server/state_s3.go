package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

// A device on shared storage keeps every key of its data dir (device.json,
// ca.crt, identities.json, ...) as an object under the location's
// StateKeyPrefix, plus two of its own:
const (
	// initializedKey is written when a first initialisation has finished:
	// before it, replicas starting at once may each create what is missing
	// (create-only, so they converge); after it, missing state is an error
	// as in a data dir.
	initializedKey = "meta/initialized"
	// kv.DeviceKey ("meta/device") names the device whose state the bucket
	// holds: "<name>.<domain>", written by the first start.
)

// openShared is the state in the bucket loc (nothing loaded yet) and the
// device its marker names ("" when none yet). Its errors name the problem
// (no credentials, no answer, no bucket, refused credentials) without a
// secret.
func openShared(ctx context.Context, loc *kv.S3Location) (*State, *kv.S3, string, error) {
	store, err := kv.NewS3(loc.KVConfig())
	if err != nil {
		return nil, nil, "", err
	}
	dev, err := store.Device(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	// A migration that has not finished (edgecrd migrate, server/migrate)
	// has copied only part of the device: a start now would create what
	// is still missing (a new CA, another device.json) and make the
	// migration's resumption impossible.
	if b, _, err := store.Get(ctx, migrationKey); err == nil {
		var m struct {
			Source   string     `json:"source"`
			Finished *time.Time `json:"finished"`
		}
		if json.Unmarshal(b, &m) == nil && m.Finished == nil {
			return nil, nil, "", fmt.Errorf("opening storage %s: a migration into it (from %q) has not finished: run edgecrd migrate again to finish it before serving from the bucket", loc, m.Source)
		}
	} else if !errors.Is(err, kv.ErrNotFound) {
		return nil, nil, "", fmt.Errorf("opening storage %s: %w", loc, err)
	}
	return &State{kv: store, loc: loc}, store, dev, nil
}

// migrationKey is edgecrd migrate's marker (server/migrate.MarkerKey):
// written when a migration starts, marked finished at its end.
const migrationKey = "meta/migration"

// deviceID is what the bucket's marker holds for a device: its CA's zone,
// which cannot change without a new CA.
func deviceID(name, domain string) string { return caZone(name, domain) }

// ID is the device's id in a bucket's kv.DeviceKey marker
// ("<name>.<domain>"): what kv.S3.Check is given for it (a migration
// into a bucket checks it the same way).
func (d *Device) ID() string { return deviceID(d.Name, d.Domain) }

// EnsureS3 is Ensure for a device whose state is in the bucket loc: the
// first start creates it there (every write create-only, so replicas
// starting at once agree on one device and one CA), later starts and other
// replicas load it. A replica needs only the URL: the bucket's marker says
// which device it holds, and flags naming another device are refused.
func EnsureS3(ctx context.Context, loc *kv.S3Location, o InitOptions, now time.Time) (*State, error) {
	s, store, marker, err := openShared(ctx, loc)
	if err != nil {
		return nil, err
	}
	b, _, exists, err := s.get(deviceFile)
	if err != nil {
		return nil, err
	}
	var name, domain string
	switch {
	case exists:
		if err := s.parseDevice(b); err != nil {
			return nil, err
		}
		name, domain = s.Device.Name, s.Device.Domain
		s.Device = Device{}
	case marker != "":
		// A first start that stopped before device.json: keep its device.
		name, domain, _ = strings.Cut(marker, ".")
	default:
		domain = DefaultDomain
	}
	if o.Name != nil {
		name = *o.Name
	}
	if o.Domain != nil {
		domain = *o.Domain
	}
	if name == "" {
		if o.DefaultName == nil {
			return nil, errors.New("initialising device: no --name and no default")
		}
		n, err := o.DefaultName()
		if err != nil {
			return nil, fmt.Errorf("initialising device: %w", err)
		}
		name = sanitizeName(n)
	}
	if !exists {
		// newDevice then uses these rather than defaults of its own.
		o.Name, o.Domain = &name, &domain
	}
	if err := store.Check(ctx, deviceID(name, domain)); err != nil {
		return nil, err
	}
	return ensure(s, o, now)
}

// LoadS3 is Load for a device whose state is in the bucket loc.
func LoadS3(ctx context.Context, loc *kv.S3Location) (*State, error) {
	s, _, marker, err := openShared(ctx, loc)
	if err != nil {
		return nil, err
	}
	if marker == "" {
		return nil, fmt.Errorf("loading storage %s: it holds no device state (run edgecrd init --storage with it first)", loc)
	}
	s, err = load(s)
	if err != nil {
		return nil, err
	}
	if id := deviceID(s.Device.Name, s.Device.Domain); id != marker {
		return nil, fmt.Errorf("loading storage %s: its marker names device %q but device.json device %q: %w", loc, marker, id, kv.ErrOtherDevice)
	}
	return s, nil
}

// ensureShared is ensure on a bucket: no lock (replicas share it), every
// step a conditional write.
func ensureShared(s *State, o InitOptions, now time.Time) (*State, error) {
	_, _, initialized, err := s.get(initializedKey)
	if err != nil {
		return nil, err
	}
	var present, missing []string
	for _, key := range stateFiles {
		_, _, ok, err := s.get(key)
		if err != nil {
			return nil, err
		}
		if ok {
			present = append(present, key)
		} else {
			missing = append(missing, key)
		}
	}
	if _, err := classify(s.describe(), present, missing, !initialized); err != nil {
		return nil, err
	}
	if err := s.ensureAll(o, now); err != nil {
		return nil, err
	}
	if !initialized && !s.dryRun {
		if _, err := s.put(initializedKey, []byte(now.UTC().Format(time.RFC3339)+"\n"), ""); err != nil && !errors.Is(err, kv.ErrConflict) {
			return nil, err
		}
	}
	return s, nil
}
