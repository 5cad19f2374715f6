package server

import (
	"io"
	"net/http"
	"sync"
)

// readAheadSize is how much of an HTTP/2 request body one Read may take
// from the connection at a time.
const readAheadSize = 256 << 10

// readAhead gives an HTTP/2 upload body a 256 KiB buffer between the
// connection and distribution, which reads it 32 KiB at a time (io.Copy
// into the hash, teed to the file). Each Read of an HTTP/2 body is a
// message to the connection's serve loop that sends two WINDOW_UPDATE
// frames (connection and stream), each its own TLS record, write(2) and
// goroutine once at least 4 KiB were consumed, so 32 KiB reads of a 512 MiB
// push cost tens of thousands of them; in the push's profile the frame
// writes were a sixth of edgecrd's CPU. One Read takes whatever the stream
// has buffered (up to the 1 MiB window), so while the handler is busy
// hashing and writing, a Read here takes several frames' worth and the
// window updates come in fewer, larger steps. The bytes are the same,
// in the same order; a body that ends or fails ends or fails here the same
// way.
//
// HTTP/1.1 bodies are read from the TLS connection a record (16 KiB) at a
// time whatever the buffer, and small bodies (a manifest) would only pay
// for the copy: both are left as they are.
func readAhead(r *http.Request) io.ReadCloser {
	if r.ProtoMajor != 2 || (r.ContentLength >= 0 && r.ContentLength <= readAheadSize) {
		return r.Body
	}
	return &readAheadBody{body: r.Body}
}

var readAheadPool = sync.Pool{New: func() any { return new([readAheadSize]byte) }}

type readAheadBody struct {
	body       io.ReadCloser
	buf        *[readAheadSize]byte // taken at the first Read, given back at the end
	start, end int                  // unread bytes are buf[start:end]
	err        error                // of the body, returned once buf is drained
}

func (b *readAheadBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.start == b.end {
		if b.err != nil {
			b.release()
			return 0, b.err
		}
		if len(p) >= readAheadSize {
			return b.body.Read(p) // as large as the buffer: nothing to gain
		}
		if b.buf == nil {
			b.buf = readAheadPool.Get().(*[readAheadSize]byte)
		}
		n, err := b.body.Read(b.buf[:])
		b.start, b.end, b.err = 0, n, err
		if n == 0 {
			if err == nil {
				return 0, nil
			}
			b.release()
			return 0, err
		}
	}
	n := copy(p, b.buf[b.start:b.end])
	b.start += n
	return n, nil
}

// release gives the buffer back once nothing of it is unread.
func (b *readAheadBody) release() {
	if b.buf != nil && b.start == b.end {
		readAheadPool.Put(b.buf)
		b.buf = nil
	}
}

func (b *readAheadBody) Close() error {
	b.start, b.end = 0, 0
	b.release()
	return b.body.Close()
}
