package credhelper

import (
	"bytes"
	"encoding/json"
)

// Edit is one splice that Register made to a document: at byte Offset, Old
// was replaced by New. Old only ever holds whitespace, "", null or a helper
// name, never anything of the user's secrets, so a Change can be kept in a
// state file.
type Edit struct {
	Offset int    `json:"offset"`
	Old    string `json:"old"`
	New    string `json:"new"`
}

// editor applies splices to a document and records them.
type editor struct {
	doc   []byte
	edits []Edit
}

// splice replaces doc[start:end] with text.
func (e *editor) splice(start, end int, text string) {
	old := string(e.doc[start:end])
	if old == text {
		return
	}
	e.doc = replaceAt(e.doc, start, old, text)
	e.edits = append(e.edits, Edit{Offset: start, Old: old, New: text})
}

func replaceAt(doc []byte, at int, old, text string) []byte {
	out := make([]byte, 0, len(doc)-len(old)+len(text))
	out = append(out, doc[:at]...)
	out = append(out, text...)
	return append(out, doc[at+len(old):]...)
}

// undoEdits reverses edits, last first; false when doc does not hold what
// they wrote.
func undoEdits(doc []byte, edits []Edit) ([]byte, bool) {
	for i := len(edits) - 1; i >= 0; i-- {
		ed := edits[i]
		end := ed.Offset + len(ed.New)
		if ed.Offset < 0 || end > len(doc) || string(doc[ed.Offset:end]) != ed.New {
			return nil, false
		}
		doc = replaceAt(doc, ed.Offset, ed.New, ed.Old)
	}
	return doc, true
}

// setMember makes o[key] = value (JSON text): the value of an existing
// member is replaced in place, a new member goes last, laid out like its
// neighbours (or like the document, in an empty object).
func (e *editor) setMember(o object, key, value string) error {
	i, err := o.find(key)
	if err != nil {
		return err
	}
	if i >= 0 {
		m := o.members[i]
		e.splice(m.valueStart, m.valueEnd, value)
		return nil
	}
	n := len(o.members)
	if n == 0 {
		l := detectLayout(e.doc)
		text := quote(key) + l.colon + value
		if l.multiline {
			outer := lineIndent(e.doc, o.open)
			text = l.eol + outer + l.indent + text + l.eol + outer
		}
		e.splice(o.open+1, o.close, text)
		return nil
	}
	last := o.members[n-1]
	gapStart := o.open + 1 // the text before the first key
	if n >= 2 {
		gapStart = skipSpace(e.doc, o.members[n-2].valueEnd) + 1 // past the ','
	}
	gap := string(e.doc[gapStart:last.keyStart])
	colon := string(e.doc[last.keyEnd:last.valueStart])
	e.splice(last.valueEnd, last.valueEnd, ","+gap+quote(key)+colon+value)
	return nil
}

// removeMember deletes o's i-th member with its comma and the space that
// led to it, leaving the rest of the layout as it was.
func (e *editor) removeMember(o object, i int) {
	n := len(o.members)
	switch {
	case n == 1:
		e.splice(o.open+1, o.close, "")
	case i == n-1: // from the end of the one before: `,\n  "k": v`
		e.splice(o.members[i-1].valueEnd, o.members[i].valueEnd, "")
	default: // up to the next key: `"k": v,\n  `
		e.splice(o.members[i].keyStart, o.members[i+1].keyStart, "")
	}
}

// layout is how a document is formatted, so that what we insert looks
// like what is there.
type layout struct {
	multiline bool
	eol       string // "\n" or "\r\n"
	indent    string // one level
	colon     string // between a key and its value
}

// detectLayout reads the layout off the top-level object: multi-line when
// its first key is on a line of its own, indented as that key is. A
// document with nothing to go by gets Docker's own layout (tabs, ": ").
func detectLayout(doc []byte) layout {
	l := layout{multiline: true, eol: "\n", indent: "\t", colon: ": "}
	if bytes.Contains(doc, []byte("\r\n")) {
		l.eol = "\r\n"
	}
	top, err := parseTop(doc)
	if err != nil || len(top.members) == 0 {
		return l
	}
	first := top.members[0]
	lead := doc[top.open+1 : first.keyStart]
	l.colon = string(doc[first.keyEnd:first.valueStart])
	nl := bytes.LastIndexByte(lead, '\n')
	l.multiline = nl >= 0
	if l.multiline && nl+1 < len(lead) {
		l.indent = string(lead[nl+1:])
	}
	return l
}

// lineIndent returns the spaces and tabs that start the line holding
// doc[at].
func lineIndent(doc []byte, at int) string {
	start := bytes.LastIndexByte(doc[:at], '\n') + 1
	end := start
	for end < at && (doc[end] == ' ' || doc[end] == '\t') {
		end++
	}
	return string(doc[start:end])
}

// quote renders s as a JSON string.
func quote(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}
