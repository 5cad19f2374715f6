package trusttest

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"sync"
)

// Store is an in-memory trust.Store for the agent's tests. It checks its
// input as the real stores do (one PEM certificate, a non-empty name).
type Store struct {
	mu    sync.Mutex
	certs map[string][]byte
}

// NewStore returns an empty Store.
func NewStore() *Store { return &Store{certs: map[string][]byte{}} }

var errBadInput = errors.New("trusttest: bad name or PEM")

func canonical(name string, b []byte) ([]byte, error) {
	block, rest := pem.Decode(b)
	if name == "" || block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errBadInput
	}
	return block.Bytes, nil
}

// Install implements trust.Store.
func (s *Store) Install(_ context.Context, name string, pemBytes []byte) (bool, error) {
	der, err := canonical(name, pemBytes)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if bytes.Equal(s.certs[name], der) {
		return false, nil
	}
	s.certs[name] = der
	return true, nil
}

// Uninstall implements trust.Store.
func (s *Store) Uninstall(_ context.Context, name string, pemBytes []byte) (bool, error) {
	if _, err := canonical(name, pemBytes); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.certs[name]; !ok {
		return false, nil
	}
	delete(s.certs, name)
	return true, nil
}

// Installed implements trust.Store.
func (s *Store) Installed(_ context.Context, name string, pemBytes []byte) (bool, error) {
	der, err := canonical(name, pemBytes)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Equal(s.certs[name], der), nil
}

// Names returns the names installed, for assertions.
func (s *Store) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for n := range s.certs {
		names = append(names, n)
	}
	return names
}
