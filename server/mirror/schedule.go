package mirror

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is when serve runs a rule. Its text form is one of
//
//	off            never on its own (`edgecrd sync run` runs it)
//	daily@HH:MM    every day at HH:MM, device local time
//	every@DURATION every DURATION (Go syntax, at least 1m) after start
//
// An empty schedule is off.
type Schedule struct {
	spec         string
	every        time.Duration
	hour, minute int
	daily        bool
}

// ParseSchedule reads a schedule in the form Schedule documents.
func ParseSchedule(spec string) (Schedule, error) {
	s := strings.ToLower(strings.TrimSpace(spec))
	bad := func(why string) (Schedule, error) {
		return Schedule{}, fmt.Errorf("unknown schedule %q: %s (want off, daily@HH:MM or every@DURATION, e.g. daily@02:00, every@1h)", spec, why)
	}
	kind, arg, _ := strings.Cut(s, "@")
	switch {
	case s == "" || s == "off":
		return Schedule{spec: "off"}, nil
	case kind == "daily":
		hh, mm, ok := strings.Cut(arg, ":")
		h, err1 := strconv.Atoi(hh)
		m, err2 := strconv.Atoi(mm)
		if !ok || err1 != nil || err2 != nil || len(mm) != 2 || h < 0 || h > 23 || m < 0 || m > 59 {
			return bad(fmt.Sprintf("bad time of day %q (want HH:MM, 00:00 to 23:59)", arg))
		}
		return Schedule{spec: s, daily: true, hour: h, minute: m}, nil
	case kind == "every":
		d, err := time.ParseDuration(arg)
		if err != nil {
			return bad(fmt.Sprintf("bad duration %q", arg))
		}
		if d < time.Minute {
			return bad(fmt.Sprintf("interval %s is shorter than 1m", d))
		}
		return Schedule{spec: s, every: d}, nil
	}
	return bad("unknown form")
}

// Interval is the period of an every@ schedule; 0 for the others.
func (s Schedule) Interval() time.Duration { return s.every }

// Off reports whether the schedule never runs on its own.
func (s Schedule) Off() bool { return s.every == 0 && !s.daily }

func (s Schedule) String() string {
	if s.spec == "" {
		return "off"
	}
	return s.spec
}

// Next is the first run strictly after t; the zero time when off.
func (s Schedule) Next(t time.Time) time.Time {
	switch {
	case s.every > 0:
		return t.Add(s.every)
	case s.daily:
		n := time.Date(t.Year(), t.Month(), t.Day(), s.hour, s.minute, 0, 0, t.Location())
		if !n.After(t) {
			n = time.Date(t.Year(), t.Month(), t.Day()+1, s.hour, s.minute, 0, 0, t.Location())
		}
		return n
	}
	return time.Time{}
}
