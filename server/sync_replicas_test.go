package server

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecr/edgecr/server/mirror"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Issue 15 with the S3 replicas: two replicas on one MinIO bucket both
// schedule the same rule; when its turn comes exactly one runs it (the
// sync lease, like GC's) and the other skips, sending the upstream
// nothing. A runner killed while it held the lease (its lease neither
// renewed nor released) makes runs skip until the lease expires; the
// next run then completes.
func TestSyncOneRunnerAcrossReplicas(t *testing.T) {
	up := newUpstream(t)
	up.pushImage(t, "team/app", "1.0.0", 1<<20)
	yaml := up.yaml() + "rules:\n  - {name: r, upstream: up, repositories: [team/app], schedule: every@10m}\n"
	site := startS3Site(t)
	var reps [2]*testServer
	for i := range reps {
		cfg := parseConfig(t, yaml) // each replica its own, as each process reads the file
		reps[i] = site.replica(t, func(o *Options) { o.Sync, o.SyncRate = cfg, 512<<10 })
	}

	// Both replicas' schedules: the turn came a second ago (the first
	// reading of each clock is 10 min before it, when serve started).
	ctx, cancel := context.WithCancel(context.Background())
	var loops sync.WaitGroup
	for _, r := range reps {
		var calls atomic.Int64
		t0 := time.Now().Add(-10*time.Minute - time.Second)
		now := func() time.Time {
			if calls.Add(1) == 1 {
				return t0
			}
			return time.Now()
		}
		loops.Go(func() { r.srv.sync.loop(ctx, now) })
	}
	count := func(msg string) (n int) {
		for _, r := range reps {
			n += strings.Count(r.logs.String(), `"msg":"`+msg+`"`)
		}
		return n
	}
	deadline := time.Now().Add(time.Minute)
	for count("sync finished")+count("sync skipped") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: %d run(s) finished, %d skipped, want 1 and 1", count("sync finished"), count("sync skipped"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	loops.Wait()
	if started, skipped := count("sync started"), count("sync skipped"); started != 1 || skipped != 1 {
		t.Fatalf("the rule's turn on two replicas: %d run(s) started, %d skipped; want 1 and 1", started, skipped)
	}
	var ran, idle *testServer
	for _, r := range reps {
		if strings.Contains(r.logs.String(), `"msg":"sync started"`) {
			ran = r
		} else {
			idle = r
		}
	}
	for _, l := range strings.Split(idle.logs.String(), "\n") {
		if strings.Contains(l, "sync skipped") {
			t.Logf("the other replica: %s", l)
		}
	}
	if n := idle.srv.SyncUpstreamRequests("up"); n != 0 {
		t.Errorf("the replica that skipped sent the upstream %d request(s), want none", n)
	}
	if st := ran.srv.SyncStatus(); st[0].Copied != 1 {
		t.Errorf("the replica that ran: %+v, want 1 image copied", st)
	}
	if _, err := remote.Head(idle.ref("team/app:1.0.0"), idle.admin()...); err != nil {
		t.Errorf("the synced image through the replica that skipped: %v", err)
	}

	// The replicas started at different times: the idle one's turn comes
	// 4 min after the other's (every@10m). The run 4 min ago stands for it.
	sc := idle.srv.sync.m.Config().Rule("r").ScheduleOf()
	_, err := idle.srv.sync.run(context.Background(), mirror.RunOptions{Rules: []string{"r"}}, "schedule", turnSince(sc, time.Now().Add(4*time.Minute)))
	if !errors.Is(err, errTurnRan) {
		t.Fatalf("the idle replica's own turn, 4 min after the run: %v, want it skipped", err)
	}
	t.Logf("the idle replica's own turn: %v", err)
	if n := idle.srv.SyncUpstreamRequests("up"); n != 0 {
		t.Errorf("the replica that skipped its turn sent the upstream %d request(s), want none", n)
	}

	// A runner killed while it held the lease: taken with 3 s left, never
	// renewed nor released.
	up.pushImage(t, "team/app", "1.1.0", 64<<10)
	bg := context.Background()
	var dead *gcLeaseHandle
	dead, err = acquireLease(bg, site.store, syncLeaseKey, ErrSyncRunning, "dead-host/1", "deadrun",
		func() time.Time { return time.Now().Add(3*time.Second - gcLeaseTTL) })
	if err != nil {
		t.Fatal(err)
	}
	_, err = idle.srv.sync.run(bg, mirror.RunOptions{Rules: []string{"r"}}, "schedule", time.Now())
	if !errors.Is(err, ErrSyncRunning) || !strings.Contains(err.Error(), "dead-host/1") {
		t.Fatalf("a run while the dead runner's lease is live: %v, want ErrSyncRunning naming dead-host/1", err)
	}
	t.Logf("while the dead runner's lease is live: %v", err)
	if _, err := idle.srv.Sync(bg, mirror.RunOptions{}); !errors.Is(err, ErrSyncRunning) {
		t.Fatalf("edgecrd sync run while the dead runner's lease is live: %v, want ErrSyncRunning", err)
	}
	time.Sleep(time.Until(dead.lease.Expires) + 100*time.Millisecond)
	rep, err := idle.srv.sync.run(bg, mirror.RunOptions{Rules: []string{"r"}}, "schedule", time.Now())
	if err != nil {
		t.Fatalf("the run after the dead runner's lease expired: %v", err)
	}
	if rep.Count(mirror.OutcomeCopied) != 1 || rep.Count(mirror.OutcomeSkipped) != 1 {
		t.Fatalf("the run after the lease expired: %+v, want 1.1.0 copied and 1.0.0 skipped", rep.Items)
	}
	if _, err := remote.Head(ran.ref("team/app:1.1.0"), ran.admin()...); err != nil {
		t.Errorf("team/app:1.1.0 through the other replica: %v", err)
	}
	// The lease was released: the other replica runs at once.
	if _, err := ran.srv.Sync(bg, mirror.RunOptions{}); err != nil {
		t.Errorf("a run on the other replica after the first released the lease: %v", err)
	}
}

// A run whose lease another runner takes over (its holder was thought
// dead: a pause longer than the lease) stops at its next renewal instead
// of running beside the new holder, and says why; no tag is left partial.
func TestSyncStopsWhenLeaseLost(t *testing.T) {
	shortGCTimings(t) // the lease lasts 3 s, renewed every second
	up := newUpstream(t)
	up.pushImage(t, "team/big", "1.0.0", 4<<20)
	cfg := parseConfig(t, up.yaml()+"rules:\n  - {name: r, upstream: up, repositories: [team/big]}\n")
	site := startS3Site(t)
	r := site.replica(t, func(o *Options) { o.Sync, o.SyncRate = cfg, 512<<10 }) // 8 s for the image
	ctx := context.Background()
	type result struct {
		rep *mirror.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := r.srv.Sync(ctx, mirror.RunOptions{})
		done <- result{rep, err}
	}()
	// Once the run holds the lease, another runner takes it over.
	deadline := time.Now().Add(30 * time.Second)
	for {
		cur, ver, err := site.store.Get(ctx, syncLeaseKey)
		if err == nil {
			var l gcLease
			if err := json.Unmarshal(cur, &l); err != nil {
				t.Fatal(err)
			}
			l.Holder, l.Run = "other-host/2", "takeover"
			b, _ := json.Marshal(l)
			if _, err := site.store.Put(ctx, syncLeaseKey, b, ver); err != nil {
				t.Fatalf("taking the lease over: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the run never took the sync lease")
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	var res result
	select {
	case res = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the run went on 20 s after its lease was taken over")
	}
	t.Logf("stopped %v after the takeover: %v", time.Since(start).Round(time.Millisecond), res.err)
	if res.err == nil || !strings.Contains(res.err.Error(), "taken over") {
		t.Fatalf("the run after its lease was taken over: %v %+v, want an error saying the lease was taken over", res.err, res.rep)
	}
	if _, err := remote.Head(r.ref("team/big:1.0.0"), r.admin()...); err == nil {
		t.Error("team/big:1.0.0 is visible after a stopped run")
	}
	// The new holder's lease is not released by the stopped run.
	cur, _, err := site.store.Get(ctx, syncLeaseKey)
	if err != nil || !strings.Contains(string(cur), "other-host/2") {
		t.Errorf("the lease after the stopped run: %s %v, want other-host/2's", cur, err)
	}
}
