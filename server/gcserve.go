package server

import (
	"context"
	"sync"
	"time"
)

// gcTracker keeps the GC metrics in step with gc.json, whichever process
// wrote it: serve's own schedule or `edgecrd gc` next to it.
type gcTracker struct {
	st *State
	m  *metrics

	mu     sync.Mutex
	stamp  time.Time // gc.json's mtime when last looked at
	lastID string    // the last run counted
}

func (t *gcTracker) init(st *State, m *metrics) error {
	t.st, t.m = st, m
	t.stamp = st.gcFileStamp()
	sum, err := st.LastGC()
	if err != nil {
		return err
	}
	if sum != nil {
		t.lastID = sum.ID
		t.setLast(sum)
	}
	return nil
}

func (t *gcTracker) setLast(sum *GCSummary) {
	t.m.gcLastRun.Set(float64(sum.Finished.UnixNano()) / 1e9)
	t.m.gcLastDuration.Set(sum.DurationSeconds)
	t.m.gcLastReclaimed.Set(float64(sum.ReclaimedBytes))
}

// count adds a finished run to the metrics once.
func (t *gcTracker) count(sum *GCSummary, failed bool) {
	if failed {
		t.m.gcRuns.WithLabelValues("failure").Inc()
	} else {
		t.m.gcRuns.WithLabelValues("success").Inc()
	}
	if sum == nil || sum.DryRun || sum.ID == t.lastID {
		return
	}
	t.lastID = sum.ID
	t.m.gcReclaimed.Add(float64(sum.ReclaimedBytes))
	t.m.gcBlobs.Add(float64(sum.BlobsDeleted))
	t.m.gcManifests.Add(float64(sum.ManifestsDeleted))
	t.setLast(sum)
}

// ran records a run of this process.
func (t *gcTracker) ran(rep *GCReport, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var sum *GCSummary
	if rep != nil {
		sum = &rep.GCSummary
	}
	t.count(sum, err != nil)
	t.stamp = t.st.gcFileStamp()
}

// poll looks for a run another process recorded since the last look.
func (t *gcTracker) poll() (*GCSummary, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	stamp := t.st.gcFileStamp()
	if stamp.Equal(t.stamp) {
		return nil, false
	}
	t.stamp = stamp
	sum, err := t.st.LastGC()
	if err != nil || sum == nil || sum.ID == t.lastID {
		return nil, false
	}
	t.count(sum, sum.Failures > 0)
	return sum, true
}

// CollectGarbage runs a collection in this process (what the schedule
// does), then updates the metrics and recounts storage usage.
func (s *Server) CollectGarbage(ctx context.Context, o GCOptions) (*GCReport, error) {
	if o.Logger == nil {
		o.Logger = s.log
	}
	rep, err := s.state.CollectGarbage(ctx, o)
	s.gc.ran(rep, err)
	if rep != nil && !rep.DryRun {
		s.usage.walk()
		s.collected()
	}
	if err != nil {
		s.log.Error("garbage collection failed", "trigger", o.Trigger, "err", err)
	}
	if rep != nil {
		s.log.Info("garbage collection finished", "trigger", o.Trigger, "dryRun", rep.DryRun,
			"reclaimedBytes", rep.ReclaimedBytes, "blobsDeleted", rep.BlobsDeleted,
			"manifestsDeleted", rep.ManifestsDeleted, "layerLinksDeleted", rep.LayerLinksDeleted,
			"uploadsPurged", rep.UploadsPurged, "skippedYoung", rep.SkippedYoung, "restored", rep.Restored,
			"duration", rep.Duration(), "storageUsedBytes", s.usage.used())
	}
	return rep, err
}

// gcLoop runs collections on the schedule until ctx ends.
func (s *Server) gcLoop(ctx context.Context) {
	defer s.loops.Done()
	for {
		now := s.opts.Now()
		next := s.opts.GCSchedule.Next(now)
		s.log.Info("garbage collection scheduled", "schedule", s.opts.GCSchedule.String(), "next", next)
		t := time.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.CollectGarbage(ctx, GCOptions{
			Grace: s.opts.GCGrace, DeleteUntagged: s.opts.GCDeleteUntagged, Trigger: "schedule",
		})
	}
}

// storageLoop recounts storage usage now and then, and at once when
// another process has collected garbage.
func (s *Server) storageLoop(ctx context.Context) {
	walk := time.NewTicker(s.opts.UsageRefresh)
	defer walk.Stop()
	poll := time.NewTicker(min(15*time.Second, s.opts.UsageRefresh))
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-walk.C:
			s.usage.walk()
		case <-poll.C:
			if sum, ok := s.gc.poll(); ok {
				s.usage.walk()
				s.collected()
				s.log.Info("garbage collection by another process", "trigger", sum.Trigger,
					"reclaimedBytes", sum.ReclaimedBytes, "blobsDeleted", sum.BlobsDeleted,
					"manifestsDeleted", sum.ManifestsDeleted, "storageUsedBytes", s.usage.used())
			}
		}
	}
}

// StorageUsed is the registry's current storage usage in bytes.
func (s *Server) StorageUsed() int64 { return s.usage.used() }

// collected tells the web UI's image index that a collection changed the
// storage.
func (s *Server) collected() { s.imgIndex.changedAllIfUsed() }
