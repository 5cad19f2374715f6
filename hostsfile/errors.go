package hostsfile

import (
	"errors"
	"fmt"
)

var (
	// ErrHostOwnedByUser means a line outside edgecr's block already maps the
	// host name. The error is a *ConflictError that says which line.
	ErrHostOwnedByUser = errors.New("host name is mapped by a line edgecr does not own")

	// ErrMalformedBlock means the edgecr markers in the file do not pair up
	// (a BEGIN without END, an END without BEGIN, or nested blocks), so edgecr
	// cannot tell which lines are its own and changes nothing.
	ErrMalformedBlock = errors.New("malformed edgecr block")

	// ErrInvalidHost means the host name is not a valid RFC 1123 host name.
	ErrInvalidHost = errors.New("invalid host name")

	// ErrInvalidIP means the address cannot be written as a hosts entry.
	ErrInvalidIP = errors.New("invalid IP address")
)

// ConflictError reports the user's line that already maps the host name.
// It matches ErrHostOwnedByUser with errors.Is.
type ConflictError struct {
	Host string // the host name edgecr was asked to map
	Line int    // 1-based line number of the user's line
	Text string // the user's line, without its line terminator
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("line %d %q already maps %s and is not managed by edgecr: "+
		"remove or comment out that line, then run the command again",
		e.Line, e.Text, e.Host)
}

// Unwrap makes errors.Is(err, ErrHostOwnedByUser) true.
func (e *ConflictError) Unwrap() error { return ErrHostOwnedByUser }
