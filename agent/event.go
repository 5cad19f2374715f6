package agent

// Status is the outcome of one thing a command did or checked.
type Status string

// Event statuses.
const (
	StatusChanged   Status = "changed"   // edgecr changed something
	StatusUnchanged Status = "unchanged" // already as wanted
	StatusSkipped   Status = "skipped"   // not applicable here (a runtime not present)
	StatusWarning   Status = "warning"   // done, but something needs the user's attention
	StatusNotice    Status = "notice"    // what the user must do (restart a daemon)
	StatusUndone    Status = "undone"    // rolled back after a failure
	StatusPlanned   Status = "planned"   // --dry-run: what would be done
)

// Event is one line of a command's progress: join, leave and the dry-run
// plan report each thing as it happens.
type Event struct {
	Step   string `json:"step"`   // the join step (bootstrap, hosts, ...), or "leave"
	Item   string `json:"item"`   // what: "hosts", "trust store", "docker", ...
	Status Status `json:"status"` //
	Detail string `json:"detail"` // a sentence; never a secret
}

// String renders the event as a progress line: "✓ hosts: added …".
func (e Event) String() string {
	mark := "✓"
	switch e.Status {
	case StatusSkipped:
		mark = "-"
	case StatusWarning, StatusNotice:
		mark = "!"
	case StatusUndone:
		mark = "↺"
	case StatusPlanned:
		mark = "•"
	}
	return mark + " " + e.Item + ": " + e.Detail
}

// reporter collects events and hands each to report (which may be nil).
type reporter struct {
	report func(Event)
	events []Event
}

func (r *reporter) emit(step, item string, st Status, detail string) {
	e := Event{Step: step, Item: item, Status: st, Detail: detail}
	r.events = append(r.events, e)
	if r.report != nil {
		r.report(e)
	}
}
