// Package fsretry replaces files that another program may hold open. On
// Windows a rename over a file opened without FILE_SHARE_DELETE (an editor,
// an antivirus scan, the docker CLI reading config.json, the DNS Client
// reading the hosts file) fails with a sharing violation or "Access is
// denied" until that program lets go, usually within moments; a read-only
// target fails every time. Rename retries the first with backoff for a
// bounded time and replaces a read-only target keeping it read-only. On
// other systems it is os.Rename.
package fsretry

import (
	"fmt"
	"time"
)

// Budget bounds how long Rename keeps retrying.
const Budget = 5 * time.Second

// retry runs op until it succeeds, fails with an error retryable rejects,
// or budget is spent, sleeping 10 ms, 20 ms, … (at most 500 ms) between
// tries. The error after the budget says what to close.
func retry(op func() error, retryable func(error) bool, sleep func(time.Duration), budget time.Duration, path string) error {
	delay, waited := 10*time.Millisecond, time.Duration(0)
	for {
		err := op()
		if err == nil || !retryable(err) {
			return err
		}
		if waited >= budget {
			return fmt.Errorf("%w (still so after retrying for %s: %s is in use or its permissions refuse the change: close the programs "+
				"that may hold it open, such as an editor, an antivirus scan, Docker Desktop or a running docker command, check that "+
				"this prompt runs as administrator, and run it again)", err, budget, path)
		}
		sleep(delay)
		waited += delay
		delay = min(2*delay, 500*time.Millisecond)
	}
}
