package server

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// The read-ahead buffer of HTTP/2 upload bodies passes the bytes through
// unchanged whatever the read sizes on either side, and ends with the
// body's own error after the bytes before it.
func TestReadAheadBody(t *testing.T) {
	data := make([]byte, 3*readAheadSize+12345)
	for i := range data {
		data[i] = byte(rand.Uint32())
	}
	for _, src := range []struct {
		name string
		r    func() io.Reader
	}{
		{"whole", func() io.Reader { return bytes.NewReader(data) }},
		{"one byte at a time", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) }},
		{"half reads", func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) }},
		{"data with EOF", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) }},
	} {
		t.Run(src.name, func(t *testing.T) {
			b := &readAheadBody{body: io.NopCloser(src.r())}
			if err := iotest.TestReader(b, data); err != nil {
				t.Fatal(err)
			}
		})
	}

	boom := errors.New("connection reset")
	b := &readAheadBody{body: io.NopCloser(io.MultiReader(bytes.NewReader(data[:1000]), iotest.ErrReader(boom)))}
	got, err := io.ReadAll(b)
	if !errors.Is(err, boom) || !bytes.Equal(got, data[:1000]) {
		t.Fatalf("read %d bytes, err %v; want the 1000 bytes, then %v", len(got), err, boom)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}
