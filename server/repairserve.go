package server

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RepairStorage runs RepairStorage on the data dir's registry storage
// under the GC lock (a collection moves manifests aside; the repair must
// not judge tags while it does).
func (s *State) RepairStorage(ctx context.Context, o RepairOptions) (*RepairReport, error) {
	if loc := s.S3(); loc != nil {
		// What the repair mends comes from file systems (images-on-s3.md).
		return nil, fmt.Errorf("repairing image storage in %s: not done on a bucket: no power cut leaves a tag half-written there, and the tag order holds", loc)
	}
	unlock, err := lockFile(s.Path(gcLock))
	if err != nil {
		return nil, err
	}
	defer unlock()
	return RepairStorage(ctx, s.StorageDir(), o)
}

// startRepair runs the repair once, in the background, on what was on
// disk when serve started; the registry serves meanwhile. Removed tags
// are logged and counted in edgecr_tag_repairs_total{reason}.
func (s *Server) startRepair(ctx context.Context) {
	before := time.Now()
	repairs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgecr_tag_repairs_total",
		Help: "Tags the repair on start removed, by reason: no_current_link (a write or untag a kill cut short; not listed), manifest_missing and blob_missing (listed, not pullable).",
	}, []string{"reason"})
	for _, r := range []string{repairNoCurrentLink, repairManifestMissing, repairBlobMissing} {
		repairs.WithLabelValues(r)
	}
	s.gc.m.reg.MustRegister(repairs)
	s.loops.Add(1)
	go func() {
		defer s.loops.Done()
		start := time.Now()
		rep, err := s.state.RepairStorage(ctx, RepairOptions{
			Logger: s.log, Before: before,
			Repaired: func(reason string) { repairs.WithLabelValues(reason).Inc() },
		})
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("storage repair failed", "err", err)
			}
			return
		}
		// Usage is unchanged: the trash and the tags taken aside are in the storage dir too.
		s.log.Info("storage checked", "repositories", rep.Repositories, "tags", rep.TagsChecked,
			"tagsRemoved", len(rep.Removed), "gcTrashRestored", rep.GCTrashRuns, "duration", time.Since(start))
		s.watchGCTrash(ctx, gcTrashWatchEvery)
	}()
}

// gcTrashWatchEvery is how often serve looks for the trash of a dead
// collector (tests shorten it).
var gcTrashWatchEvery = time.Minute

// watchGCTrash puts back, every interval, what an `edgecrd gc` that died
// while serve kept running left in the trash: a manifest a push re-tagged
// while the collector had it aside must not wait for the next collection
// to resolve again. A trash whose collector still runs holds the GC lock
// and is left alone.
func (s *Server) watchGCTrash(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := os.Stat(osPath(s.state.StorageDir(), trashRoot)); err != nil {
			continue
		}
		unlock, ok, err := tryLockFile(s.state.Path(gcLock))
		if err != nil || !ok {
			continue
		}
		runs, err := recoverGCTrash(ctx, openDurableFS(s.state.StorageDir()), s.log)
		unlock()
		switch {
		case err != nil:
			s.log.Error("restoring the trash of a garbage collection that died", "err", err)
		case runs > 0:
			s.log.Warn("restored the trash of a garbage collection that died", "runs", runs)
		}
	}
}
