package server

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// An upload written in pieces of any size through edgecrfs lands in the
// file byte for byte; Size counts what was written, also what the writer
// still gathers; a writer reopened to append continues where Size said;
// Cancel leaves nothing.
func TestDurableWriterGathersWrites(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d := newDurableFS(filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}), root)
	const p = "/docker/registry/v2/repositories/r/_uploads/u/data"
	data := make([]byte, 5*writeCoalesce+777)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	write := func(w storagedriver.FileWriter, b []byte) {
		for len(b) > 0 {
			n := min(len(b), []int{1, 100, 4096, 16 << 10, 32 << 10, writeCoalesce, 3 * writeCoalesce}[rng.IntN(7)])
			if k, err := w.Write(b[:n]); err != nil || k != n {
				t.Fatalf("write of %d bytes: %d, %v", n, k, err)
			}
			b = b[n:]
		}
	}
	w, err := d.Writer(ctx, p, false)
	if err != nil {
		t.Fatal(err)
	}
	half := len(data) / 2
	write(w, data[:half])
	if got := w.Size(); got != int64(half) {
		t.Fatalf("Size after %d bytes: %d", half, got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w, err = d.Writer(ctx, p, true); err != nil {
		t.Fatal(err)
	}
	if got := w.Size(); got != int64(half) {
		t.Fatalf("Size of the reopened upload: %d, want %d", got, half)
	}
	write(w, data[half:])
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(d.osPath(p))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file after the upload: %d bytes, %v; want the %d bytes written", len(got), err, len(data))
	}

	w, err = d.Writer(ctx, p+"2", false)
	if err != nil {
		t.Fatal(err)
	}
	write(w, data[:1000])
	if err := w.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.osPath(p + "2")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a cancelled upload left its file: %v", err)
	}
}

// failingWriter is a FileWriter whose writes fail once it holds limit
// bytes.
type failingWriter struct {
	storagedriver.FileWriter
	limit, n int64
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.n+int64(len(p)) > f.limit {
		return 0, errors.New("disk full")
	}
	f.n += int64(len(p))
	return len(p), nil
}
func (f *failingWriter) Size() int64                      { return f.n }
func (f *failingWriter) Close() error                     { return nil }
func (f *failingWriter) Commit(ctx context.Context) error { return nil }

// A gathered write that fails fails every call after it (Write, Commit,
// Close), and Size counts only what was written.
func TestDurableWriterWriteErrorSticks(t *testing.T) {
	for _, limit := range []int64{0, writeCoalesce - 1, 3*writeCoalesce + 5} {
		f := &failingWriter{limit: limit}
		w := &durableWriter{FileWriter: f, d: &durableFS{}}
		chunk := make([]byte, 16<<10)
		var werr error
		for i := 0; i < 64 && werr == nil; i++ {
			_, werr = w.Write(chunk)
		}
		cerr := w.Commit(context.Background())
		if cerr == nil || (werr != nil && !errors.Is(werr, cerr) && werr.Error() != cerr.Error()) {
			t.Fatalf("limit %d: Write error %v, Commit error %v; want the write's error from both", limit, werr, cerr)
		}
		if err := w.Close(); err == nil {
			t.Fatalf("limit %d: Close after a failed write returned nil", limit)
		}
		if _, err := w.Write(chunk); err == nil {
			t.Fatalf("limit %d: Write after a failed write returned nil", limit)
		}
		if got := w.Size(); got > limit || got%writeCoalesce != 0 {
			t.Fatalf("limit %d: Size %d; want whole gathered writes within the limit", limit, got)
		}
	}
}
