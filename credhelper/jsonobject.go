package credhelper

import (
	"encoding/json"
	"errors"
	"fmt"
)

// errNotObject is wrapped when a Docker config, or its credHelpers, is not
// a JSON object.
var errNotObject = errors.New("not a JSON object")

// object is a JSON object located in a document by byte offsets, so that
// an edit can touch only the bytes it means to change. The scanner below
// assumes a document that json.Valid accepted.
type object struct {
	open, close int // offsets of '{' and '}'
	members     []member
}

// member is one "key": value pair of an object; the spans are half open.
type member struct {
	key                  string
	keyStart, keyEnd     int // the quoted key
	valueStart, valueEnd int
}

// find returns the index of the member named key, or -1. A key that occurs
// twice is an error: which one wins is up to the reader, so editing either
// one could change nothing, or the wrong thing.
func (o object) find(key string) (int, error) {
	at := -1
	for i, m := range o.members {
		if m.key != key {
			continue
		}
		if at >= 0 {
			return -1, fmt.Errorf("%w: key %q occurs more than once", ErrMalformed, key)
		}
		at = i
	}
	return at, nil
}

// parseTop locates the top-level object of a valid, non-blank document.
func parseTop(doc []byte) (object, error) {
	return parseObject(doc, skipSpace(doc, 0))
}

// parseObject locates the object that starts at doc[at].
func parseObject(doc []byte, at int) (object, error) {
	if at >= len(doc) || doc[at] != '{' {
		return object{}, errNotObject
	}
	o := object{open: at}
	i := skipSpace(doc, at+1)
	if doc[i] == '}' {
		o.close = i
		return o, nil
	}
	for {
		m := member{keyStart: i, keyEnd: skipString(doc, i)}
		if err := json.Unmarshal(doc[m.keyStart:m.keyEnd], &m.key); err != nil {
			return object{}, malformed(err)
		}
		i = skipSpace(doc, m.keyEnd) // at ':'
		m.valueStart = skipSpace(doc, i+1)
		m.valueEnd = skipValue(doc, m.valueStart)
		o.members = append(o.members, m)
		i = skipSpace(doc, m.valueEnd)
		if doc[i] == '}' {
			o.close = i
			return o, nil
		}
		i = skipSpace(doc, i+1) // past ','
	}
}

func skipSpace(doc []byte, i int) int {
	for i < len(doc) {
		switch doc[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the offset just past the string that starts at doc[i].
func skipString(doc []byte, i int) int {
	for j := i + 1; j < len(doc); j++ {
		switch doc[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(doc)
}

// skipValue returns the offset just past the value that starts at doc[i].
func skipValue(doc []byte, i int) int {
	switch doc[i] {
	case '"':
		return skipString(doc, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(doc); j++ {
			switch doc[j] {
			case '"':
				j = skipString(doc, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(doc)
	default: // number, true, false, null
		j := i
		for j < len(doc) {
			switch doc[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j
			}
			j++
		}
		return j
	}
}
