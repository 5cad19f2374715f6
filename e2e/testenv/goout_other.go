//go:build !linux

package testenv

import "io"

// goCommandOutput is Linux only (it reads /proc): elsewhere the summary
// goes to standard error, which `go test -v` shows.
func goCommandOutput() (io.WriteCloser, bool) { return nil, false }
