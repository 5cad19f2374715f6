package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// initIncomplete marks a data dir whose first initialisation has started
// and not finished: only then may Ensure create state next to existing
// state (no client can have joined a device that never served).
const initIncomplete = ".init-incomplete"

const identitiesFile = "identities.json"

// stateFiles are the files of an initialised data dir. Each one missing
// next to the others is half-present state: recreating it would give the
// device a new identity (CA, name, IPs) or forget its clients.
var stateFiles = []string{deviceFile, caCertFile, caKeyFile, serverCertFile, serverKeyFile, identitiesFile, adminFile}

// ErrHalfPresent is returned (wrapped) when some state files of a data dir
// exist and others are missing.
var ErrHalfPresent = errors.New("half-present state")

// checkComplete tells a fresh data dir (no state yet: Ensure creates it)
// from an initialised one, and refuses one that is neither. Removing both
// server.crt and server.key is the documented way to have them reissued
// under the same CA, so that pair may be missing together; a pre-seeded
// admin.password alone is a fresh dir.
func checkComplete(dir string) (fresh bool, err error) {
	var present, missing []string
	for _, name := range stateFiles {
		_, err := os.Lstat(filepath.Join(dir, name))
		switch {
		case err == nil:
			present = append(present, name)
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, name)
		default:
			return false, fmt.Errorf("checking data dir %s: %w", dir, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, initIncomplete)); err == nil {
		return classify("data dir "+dir, present, missing, true)
	}
	return classify("data dir "+dir, present, missing, false)
}

// classify is checkComplete's judgement on which state files are present;
// interrupted: a first initialisation started and did not finish.
func classify(where string, present, missing []string, interrupted bool) (fresh bool, err error) {
	if len(present) == 0 || (len(present) == 1 && present[0] == adminFile) {
		return true, nil
	}
	if interrupted {
		return true, nil // an interrupted first start: finish it
	}
	if len(missing) == 2 && missing[0] == serverCertFile && missing[1] == serverKeyFile {
		missing = nil
	}
	if len(missing) == 0 {
		return false, nil
	}
	remedy := "restore the data dir from a backup (edgecrd restore), or move it away to start a new device (every client then joins again)"
	if strings.HasPrefix(where, "storage ") {
		remedy = "restore the missing keys from the bucket's versions or a copy, or give another bucket or prefix to start a new device (every client then joins again)"
	}
	return false, fmt.Errorf("checking %s: %w: %s missing while %s exist; nothing was changed: %s",
		where, ErrHalfPresent, strings.Join(missing, ", "), strings.Join(present, ", "), remedy)
}
