package server

import (
	"fmt"
	"time"
)

// ClientInfo is one row of `edgecrd clients ls`.
type ClientInfo struct {
	ID       string     `json:"id"`
	Name     string     `json:"name"`
	Kind     string     `json:"kind"`
	Role     Role       `json:"role"`
	Joined   time.Time  `json:"joined"`
	LastSeen *time.Time `json:"lastSeen"`
	Revoked  bool       `json:"revoked"`
	// RevokedAt is set when Revoked is.
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

// Clients lists every identity but the admin's, with last-seen times as
// the running server last saved them.
func (s *State) Clients() ([]ClientInfo, error) {
	recs, err := s.Identities().Read()
	if err != nil {
		return nil, err
	}
	seen, err := s.LastSeen()
	if err != nil {
		return nil, err
	}
	out := []ClientInfo{}
	for _, i := range recs.Identities {
		if i.ID == AdminUser {
			continue
		}
		c := ClientInfo{ID: i.ID, Name: i.Name, Kind: i.Kind, Role: i.Role, Joined: i.Created, Revoked: i.Revoked != nil, RevokedAt: i.Revoked}
		if t, ok := seen[i.ID]; ok {
			c.LastSeen = &t
		}
		out = append(out, c)
	}
	return out, nil
}

// RevokeClient revokes a client; the running server refuses it from the
// next request on.
func (s *State) RevokeClient(id string, now time.Time) error {
	if id == AdminUser {
		return fmt.Errorf("revoking %s: the admin identity cannot be revoked", id)
	}
	return s.Identities().Revoke(id, now)
}

// Tokens lists the join tokens (without secrets, which are not stored).
func (s *State) Tokens() ([]*Token, error) {
	recs, err := s.Identities().Read()
	if err != nil {
		return nil, err
	}
	if recs.Tokens == nil {
		return []*Token{}, nil
	}
	return recs.Tokens, nil
}
