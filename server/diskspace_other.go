//go:build !unix && !windows

package server

import (
	"errors"
	"fmt"
)

func diskSpaceOS(dir string) (free, total int64, err error) {
	return 0, 0, fmt.Errorf("reading the free space of %s: %w", dir, errors.ErrUnsupported)
}
