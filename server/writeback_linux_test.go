package server

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// An upload through edgecrfs syncs its file every
// writebackChunk while it is written, at most one at a time; the file
// holds every byte; Commit and Close close the writeback's descriptor,
// and a writer that was cancelled leaves no file and no descriptor.
func TestDurableWriterEarlyWriteback(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d := newDurableFS(filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}), root)
	const p = "/docker/registry/v2/repositories/r/_uploads/u/data"
	data := bytes.Repeat([]byte("0123456789abcdef"), (2*writebackChunk+12345)/16)

	fw, err := d.Writer(ctx, p, false)
	if err != nil {
		t.Fatal(err)
	}
	w := fw.(*durableWriter)
	wb := w.wb
	if wb == nil {
		t.Fatal("no early writeback on a file of the data dir")
	}
	for b := data; len(b) > 0; {
		n := min(len(b), 16<<10)
		if k, err := w.Write(b[:n]); err != nil || k != n {
			t.Fatalf("write of %d bytes: %d, %v", n, k, err)
		}
		b = b[n:]
	}
	if wb.starts < 1 || wb.starts > len(data)/writebackChunk {
		t.Errorf("early syncs started while writing %d bytes: %d, want 1 to %d", len(data), wb.starts, len(data)/writebackChunk)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := wb.f.Stat(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("the writeback's descriptor after Commit: Stat says %v, want it closed", err)
	}
	_ = w.Close()
	got, err := os.ReadFile(d.osPath(p))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("the file holds %d bytes, not the %d written", len(got), len(data))
	}

	// Cancelled: the file goes, and so does the descriptor.
	fw, err = d.Writer(ctx, p+"2", false)
	if err != nil {
		t.Fatal(err)
	}
	w = fw.(*durableWriter)
	wb = w.wb
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := wb.f.Stat(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("the writeback's descriptor after Cancel: Stat says %v, want it closed", err)
	}
	if _, err := os.Stat(d.osPath(p + "2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cancelled upload's file: %v, want it gone", err)
	}
}
