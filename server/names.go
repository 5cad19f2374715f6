package server

import "github.com/edgecr/edgecr/internal/textsafe"

// CheckClientName refuses a client name that would steer a terminal or
// reorder text where it is shown (`edgecrd clients ls`, the UI): C0/C1
// controls, escape sequences, bidirectional overrides, invalid UTF-8.
// The join is answered 400 with the reason, and the token is not spent.
func CheckClientName(n string) error { return textsafe.Check("client name", n) }
