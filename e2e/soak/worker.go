package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
)

// worker runs operations on its own repository, one at a time, so that
// the ledger of that repository is exact.
type worker struct {
	repo string
	cl   *client
	l    *ledger
	st   *stats
	o    options
	rnd  *rand.Rand
	gate *sync.RWMutex
	// failed: the last step's operation failed (run pauses).
	failed bool
}

const tagPool = 6

func (w *worker) run(ctx context.Context) {
	for ctx.Err() == nil {
		w.failed = false
		w.step(ctx)
		if w.failed {
			// A client pauses before it tries again: during a kill
			// window, operations would otherwise fail by the hundred.
			sleep(ctx, time.Duration(100+w.rnd.IntN(200))*time.Millisecond)
		}
	}
}

// record records an operation's outcome and notes a failure for run.
func (w *worker) record(kind string, start time.Time, err error) {
	if err != nil {
		w.failed = true
	}
	w.st.record(kind, w.l, start, err)
}

func (w *worker) randomTag() string { return fmt.Sprintf("t%d", w.rnd.IntN(tagPool)) }

// someTag is an acknowledged tag of the repository, "" when there is none.
func (w *worker) someTag() string {
	tags := w.l.certainTags(w.repo)
	if len(tags) == 0 {
		return ""
	}
	return tags[w.rnd.IntN(len(tags))]
}

func (w *worker) step(ctx context.Context) {
	w.gate.RLock()
	defer w.gate.RUnlock()
	opCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	p := w.rnd.IntN(100)
	if unsure := w.l.uncertainTags(w.repo); len(unsure) > 0 && w.rnd.IntN(3) == 0 {
		// Read an uncertain tag back (or delete it): what the server
		// holds settles it.
		w.settle(opCtx, ctx, unsure[w.rnd.IntN(len(unsure))])
		return
	}
	src := w.someTag()
	switch {
	case src == "":
		p = 0 // nothing to pull, move or delete yet
	case p >= 80 && len(w.l.certainTags(w.repo)) < 3:
		// Keep a few tags: under quota pressure pushes are refused
		// while deletions go on, which would leave nothing to check.
		p = 0
	}
	start := time.Now()
	switch {
	case p < 35:
		tag := w.randomTag()
		img, err := random.Image(1+w.rnd.Int64N(w.o.maxSize), 1+w.rnd.Int64N(3))
		if err != nil {
			w.record("push", start, err)
			return
		}
		d, err := img.Digest()
		if err != nil {
			w.record("push", start, err)
			return
		}
		err = w.cl.push(opCtx, w.repo, tag, img)
		if ctx.Err() != nil {
			w.l.maybe(w.repo, tag, d.String())
			return // the run ended under it: no outcome
		}
		if err != nil && isQuotaRefusal(err) {
			// The server's answer: nothing was tagged. A client backs
			// off until deletions and a collection make room.
			w.st.refused("push", start)
			w.gate.RUnlock()
			sleep(ctx, time.Duration(500+w.rnd.IntN(1000))*time.Millisecond)
			w.gate.RLock()
			return
		}
		if err == nil {
			w.l.tagged(w.repo, tag, d.String())
		} else {
			w.l.maybe(w.repo, tag, d.String())
		}
		w.record("push", start, err)
	case p < 65:
		want, _ := w.l.get(w.repo, src)
		got, err := w.cl.pull(opCtx, w.repo, src)
		if ctx.Err() != nil {
			return
		}
		if err == nil && got != want {
			err = fmt.Errorf("pull %s:%s: got %s, acknowledged %s", w.repo, src, got, want)
			w.record("pull", start, errWrong{err})
			return
		}
		w.record("pull", start, err)
	case p < 80:
		d, _ := w.l.get(w.repo, src)
		dst := w.randomTag()
		err := w.cl.tag(opCtx, w.repo, dst, d)
		if ctx.Err() != nil {
			w.l.maybe(w.repo, dst, d)
			return
		}
		if err != nil && isQuotaRefusal(err) {
			w.st.refused("move-tag", start) // the manifest PUT was refused: dst unchanged
			return
		}
		if err == nil {
			w.l.tagged(w.repo, dst, d)
		} else {
			w.l.maybe(w.repo, dst, d)
		}
		w.record("move-tag", start, err)
	case p < 90:
		err := w.cl.delete(opCtx, w.repo, src)
		if ctx.Err() != nil {
			w.l.maybe(w.repo, src, "")
			return
		}
		if err == nil {
			w.l.untagged(w.repo, src)
		} else {
			w.l.maybe(w.repo, src, "")
		}
		w.record("delete-tag", start, err)
	default:
		d, _ := w.l.get(w.repo, src)
		err := w.cl.delete(opCtx, w.repo, d)
		if ctx.Err() != nil {
			w.l.maybeDeletedDigest(w.repo, d)
			return
		}
		if err == nil {
			w.l.deletedDigest(w.repo, d)
		} else {
			w.l.maybeDeletedDigest(w.repo, d)
		}
		w.record("delete-digest", start, err)
	}
}

// errWrong is a pull that answered with other content than acknowledged:
// a failure even inside a kill window.
type errWrong struct{ error }

func isWrong(err error) bool {
	var w errWrong
	return errors.As(err, &w)
}

// isQuotaRefusal is a push the registry refused because the storage quota
// is full: an expected answer under quota pressure, not an error.
func isQuotaRefusal(err error) bool {
	return strings.Contains(err.Error(), "storage quota full") || strings.Contains(err.Error(), "storage quota exceeded")
}

// settle reads an uncertain tag (or, a third of the time, deletes it):
// the answer is its state now, which must be one of its possible states.
func (w *worker) settle(opCtx, ctx context.Context, tag string) {
	start := time.Now()
	if w.rnd.IntN(3) == 0 {
		err := w.cl.delete(opCtx, w.repo, tag)
		if ctx.Err() != nil {
			return
		}
		if err == nil || isNotFound(err) {
			w.l.untagged(w.repo, tag)
			err = nil
		} else {
			w.l.maybe(w.repo, tag, "")
		}
		w.record("delete-tag", start, err)
		return
	}
	got, err := w.cl.pull(opCtx, w.repo, tag)
	if ctx.Err() != nil {
		return
	}
	if isNotFound(err) {
		got, err = "", nil
	}
	if err == nil {
		if serr := w.l.settle(w.repo, tag, got); serr != nil {
			err = errWrong{serr}
		}
	}
	w.record("pull uncertain", start, err)
}

// isNotFound is the registry's answer for a tag or manifest it does not
// hold.
func isNotFound(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "MANIFEST_UNKNOWN") || strings.Contains(err.Error(), "NAME_UNKNOWN"))
}
