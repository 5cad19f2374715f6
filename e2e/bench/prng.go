package main

import (
	"encoding/binary"
	"math/bits"
)

// wyrand is a deterministic pseudo-random byte stream (Wang Yi's wyrand, 8
// bytes per 64-bit multiply, several GB/s). The blob must be incompressible
// and reproducible, not secret: crypto/rand or ChaCha8 would spend a core of
// this 2-core benchmark machine on the client side of the push.
//
// The stream does not depend on how the reader is called: any sequence of
// Read sizes yields the same bytes.
type wyrand struct {
	state uint64
	tail  [8]byte
	left  int // unread bytes at the end of tail
}

func newWyrand(seed uint64) *wyrand { return &wyrand{state: seed} }

func (r *wyrand) next() uint64 {
	r.state += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(r.state, r.state^0xe7037ed1a0b428db)
	return hi ^ lo
}

func (r *wyrand) Read(p []byte) (int, error) {
	n := r.drain(p)
	for ; len(p)-n >= 8; n += 8 {
		binary.LittleEndian.PutUint64(p[n:], r.next())
	}
	if n < len(p) {
		binary.LittleEndian.PutUint64(r.tail[:], r.next())
		r.left = 8
		n += r.drain(p[n:])
	}
	return n, nil
}

// drain copies what is left of the last word into p.
func (r *wyrand) drain(p []byte) int {
	n := copy(p, r.tail[8-r.left:])
	r.left -= n
	return n
}
