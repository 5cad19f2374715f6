package server

import (
	"strings"
	"testing"
	"time"
)

func TestGCScheduleNext(t *testing.T) {
	loc := time.FixedZone("device", 2*3600)
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, c := range []struct{ spec, now, want string }{
		{"daily@03:00", "2026-11-23 02:59", "2026-11-23 03:00"},
		{"daily@03:00", "2026-11-23 03:00", "2026-11-24 03:00"},
		{"DAILY@23:30", "2026-12-31 23:45", "2027-01-01 23:30"},
		{"weekly@sun@03:00", "2026-11-23 12:00", "2026-11-29 03:00"}, // a Monday
		{"weekly@mon@03:00", "2026-11-23 02:00", "2026-11-23 03:00"},
		{"weekly@mon@03:00", "2026-11-23 03:00", "2026-11-30 03:00"},
		{"every@6h", "2026-11-23 12:00", "2026-11-23 18:00"},
		{" every@90m ", "2026-11-23 23:00", "2026-11-24 00:30"},
	} {
		g, err := ParseGCSchedule(c.spec)
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		if got := g.Next(at(c.now)); !got.Equal(at(c.want)) {
			t.Errorf("%s after %s: %s, want %s", c.spec, c.now, got.Format("2006-01-02 15:04 Mon"), c.want)
		}
	}
	off, err := ParseGCSchedule("off")
	if err != nil || !off.Off() || !off.Next(time.Now()).IsZero() {
		t.Fatalf("off: %v %v", off, err)
	}
	if def, err := ParseGCSchedule(DefaultGCSchedule); err != nil || def.Off() {
		t.Fatalf("default schedule: %v", err)
	}
}

func TestGCScheduleRejectsBadSpecs(t *testing.T) {
	for _, s := range []string{"", "nightly", "daily", "daily@3", "daily@24:00", "daily@03:60", "daily@3:5", "daily@03:00@x",
		"weekly@funday@03:00", "weekly@03:00", "every@", "every@10s", "every@-1h", "every@abc", "cron@* * * * *"} {
		if _, err := ParseGCSchedule(s); err == nil || !strings.Contains(err.Error(), "invalid GC schedule") {
			t.Errorf("ParseGCSchedule(%q): err = %v", s, err)
		}
	}
}

// A server with a schedule collects on it, records the run and goes on.
func TestScheduledGCRuns(t *testing.T) {
	sched, err := ParseGCSchedule("daily@03:00")
	if err != nil {
		t.Fatal(err)
	}
	// The server's clock says 02:59:59.8 when it starts.
	real := time.Now()
	fake := time.Date(real.Year(), real.Month(), real.Day(), 2, 59, 59, 800e6, real.Location())
	offset := fake.Sub(real)
	ts := startServer(t, func(o *Options) {
		o.GCSchedule = sched
		o.GCGrace = time.Hour
		o.Now = func() time.Time { return time.Now().Add(offset) }
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(ts.logs.String(), `"trigger":"schedule"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no scheduled collection; logs:\n%s", ts.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if last, err := ts.state.LastGC(); err != nil || last == nil || last.Trigger != "schedule" {
		t.Fatalf("gc.json after a scheduled run: %+v, %v", last, err)
	}
	if !strings.Contains(ts.logs.String(), `"next":"`+fake.Add(24*time.Hour+200*time.Millisecond).Format("2006-01-02T15:04:05")) {
		t.Errorf("the next run is not announced for tomorrow 03:00:\n%s", ts.logs.String())
	}
}
