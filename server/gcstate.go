package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

const (
	gcFile = "gc.json"  // summary of the last collection that was not a dry run
	gcLock = ".gc.lock" // one collection at a time per data dir, across processes
)

// CollectGarbage runs a collection on the data dir's registry storage,
// whether or not serve is running, one at a time (a second caller waits
// for the first), and records the outcome in gc.json unless it was a dry
// run.
func (s *State) CollectGarbage(ctx context.Context, o GCOptions) (*GCReport, error) {
	if loc := s.S3(); loc != nil && !s.imagesInDir {
		return CollectGarbageS3(ctx, loc, s.KV(), o) // under gc/lease (gcshared.go)
	}
	unlock, err := lockFile(s.Path(gcLock))
	if err != nil {
		return nil, err
	}
	defer unlock()
	rep, err := CollectGarbage(ctx, s.StorageDir(), o)
	if rep != nil && !rep.DryRun && (err == nil || errors.Is(err, ErrGCIncomplete)) {
		b, _ := json.MarshalIndent(rep.GCSummary, "", "  ")
		if werr := writeFileAtomic(s.Path(gcFile), append(b, '\n'), 0o600); werr != nil {
			return rep, errors.Join(err, fmt.Errorf("recording the collection: %w", werr))
		}
	}
	return rep, err
}

// LastGC returns the summary of the last collection, or nil if none ran.
func (s *State) LastGC() (*GCSummary, error) {
	if s.S3() != nil {
		ctx, cancel := context.WithTimeout(context.Background(), storeOpTimeout)
		defer cancel()
		return lastGCShared(ctx, s.KV())
	}
	b, ok, err := readOptional(s.Path(gcFile))
	if err != nil || !ok {
		return nil, err
	}
	var sum GCSummary
	if err := json.Unmarshal(b, &sum); err != nil {
		return nil, fmt.Errorf("reading %s: corrupt file: %w", s.Path(gcFile), err)
	}
	return &sum, nil
}

// gcFileStamp identifies the current gc.json cheaply (zero when absent), so
// that serve notices a collection another process ran.
func (s *State) gcFileStamp() time.Time {
	fi, err := os.Stat(s.Path(gcFile))
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}
