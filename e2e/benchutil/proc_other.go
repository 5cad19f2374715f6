//go:build !linux

package benchutil

import "syscall"

// LoadAverage is "" without Linux /proc.
func LoadAverage() string { return "" }

// ChildAttr is nil: only Linux kills children with their parent.
func ChildAttr() *syscall.SysProcAttr { return nil }
