package server

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultGCSchedule is nightly, at 03:00 device local time.
const DefaultGCSchedule = "daily@03:00"

// GCSchedule is when serve collects garbage. Its text form is one of
//
//	off                    never (collect with `edgecrd gc` instead)
//	daily@HH:MM            every day at HH:MM, device local time
//	weekly@DAY@HH:MM       every week on DAY (mon … sun) at HH:MM
//	every@DURATION         every DURATION (Go syntax, at least 1m) after start
type GCSchedule struct {
	spec    string
	kind    scheduleKind
	hour    int
	minute  int
	weekday time.Weekday
	every   time.Duration
}

type scheduleKind int

const (
	scheduleOff scheduleKind = iota
	scheduleDaily
	scheduleWeekly
	scheduleEvery
)

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// ParseGCSchedule reads a schedule in the form GCSchedule documents.
func ParseGCSchedule(spec string) (GCSchedule, error) {
	s := strings.ToLower(strings.TrimSpace(spec))
	bad := func(why string) (GCSchedule, error) {
		return GCSchedule{}, fmt.Errorf("invalid GC schedule %q: %s (want off, daily@HH:MM, weekly@DAY@HH:MM or every@DURATION, e.g. daily@03:00, weekly@sun@03:00, every@6h)", spec, why)
	}
	g := GCSchedule{spec: s}
	parts := strings.Split(s, "@")
	switch {
	case s == "off":
		return g, nil
	case parts[0] == "daily" && len(parts) == 2:
		g.kind = scheduleDaily
		if err := g.parseClock(parts[1]); err != nil {
			return bad(err.Error())
		}
	case parts[0] == "weekly" && len(parts) == 3:
		g.kind = scheduleWeekly
		day, ok := weekdays[parts[1]]
		if !ok {
			return bad(fmt.Sprintf("unknown day %q (want mon, tue, wed, thu, fri, sat or sun)", parts[1]))
		}
		g.weekday = day
		if err := g.parseClock(parts[2]); err != nil {
			return bad(err.Error())
		}
	case parts[0] == "every" && len(parts) == 2:
		g.kind = scheduleEvery
		d, err := time.ParseDuration(parts[1])
		if err != nil {
			return bad(fmt.Sprintf("bad duration %q", parts[1]))
		}
		if d < time.Minute {
			return bad(fmt.Sprintf("interval %s is shorter than 1m", d))
		}
		g.every = d
	default:
		return bad("unknown form")
	}
	return g, nil
}

func (g *GCSchedule) parseClock(s string) error {
	hh, mm, ok := strings.Cut(s, ":")
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if !ok || err1 != nil || err2 != nil || len(mm) != 2 || h < 0 || h > 23 || m < 0 || m > 59 {
		return fmt.Errorf("bad time of day %q (want HH:MM, 00:00 to 23:59)", s)
	}
	g.hour, g.minute = h, m
	return nil
}

// Off reports whether the schedule never runs.
func (g GCSchedule) Off() bool { return g.kind == scheduleOff }

func (g GCSchedule) String() string {
	if g.spec == "" {
		return "off"
	}
	return g.spec
}

// Next is the first run strictly after t, in t's location; the zero time
// when the schedule is off.
func (g GCSchedule) Next(t time.Time) time.Time {
	switch g.kind {
	case scheduleEvery:
		return t.Add(g.every)
	case scheduleDaily, scheduleWeekly:
		n := time.Date(t.Year(), t.Month(), t.Day(), g.hour, g.minute, 0, 0, t.Location())
		for !n.After(t) || g.kind == scheduleWeekly && n.Weekday() != g.weekday {
			n = time.Date(n.Year(), n.Month(), n.Day()+1, g.hour, g.minute, 0, 0, t.Location())
		}
		return n
	}
	return time.Time{}
}
