//go:build !windows

package trust

import (
	"crypto/sha1"
	"fmt"
)

// systemWindowsRoot is crypt32's LocalMachine ROOT store, which only
// Windows has.
func systemWindowsRoot() WindowsRoot { return noWindowsRoot{} }

type noWindowsRoot struct{}

func (noWindowsRoot) Find([sha1.Size]byte) error   { return errNoCrypt32 }
func (noWindowsRoot) Add([]byte) error             { return errNoCrypt32 }
func (noWindowsRoot) Delete([sha1.Size]byte) error { return errNoCrypt32 }

var errNoCrypt32 = fmt.Errorf("opening the Windows LocalMachine Root store: %w: crypt32 exists only on Windows", ErrUnsupported)
