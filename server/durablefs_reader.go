package server

import (
	"context"
	"io"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// readChunk caps what one Read of a stored file returns. Distribution
// reads every blob it serves through a 4 MiB bufio.Reader
// (registry/storage/filereader.go), which fills its whole buffer at each
// refill: 50 pullers at once kept 50 such buffers in use and edgecrd's RSS
// went to 390 MiB (issue 14). bufio refills with a single Read, so with
// reads capped here only the first readChunk of each buffer is ever
// touched, and the rest of its pages are never made resident. 256 KiB
// reads keep a stream's throughput (docs/benchmarks.md).
const readChunk = 256 << 10

// Reader is the driver's, with each Read capped at readChunk.
func (d *durableFS) Reader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	rc, err := d.StorageDriver.Reader(ctx, p, offset)
	if err != nil {
		return nil, err
	}
	return cappedReader{rc}, nil
}

type cappedReader struct{ io.ReadCloser }

func (r cappedReader) Read(p []byte) (int, error) {
	if len(p) > readChunk {
		p = p[:readChunk]
	}
	return r.ReadCloser.Read(p)
}

var _ storagedriver.StorageDriver = (*durableFS)(nil)
