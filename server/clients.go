package server

import (
	"fmt"
	"slices"
	"strings"
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
	tks, err := s.Identities().ReadTokens()
	if err != nil {
		return nil, err
	}
	if tks == nil {
		return []*Token{}, nil
	}
	return tks, nil
}

// ClientQuery selects a page of clients for a person: Name matches a part
// of the name or id, case-insensitively ("" all); Limit caps the rows (0
// all).
type ClientQuery struct {
	Name  string
	Limit int
}

// SelectClients filters cl by q and orders it as a person looking for a
// client wants: the most recently seen first, then those never seen
// (newest joined first), revoked ones last. It returns the page and how
// many matched.
func SelectClients(cl []ClientInfo, q ClientQuery) ([]ClientInfo, int) {
	out := cl[:0:0]
	needle := strings.ToLower(strings.TrimSpace(q.Name))
	for _, c := range cl {
		if needle == "" || strings.Contains(strings.ToLower(c.Name), needle) || strings.Contains(c.ID, needle) {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b ClientInfo) int {
		if a.Revoked != b.Revoked {
			if a.Revoked {
				return 1
			}
			return -1
		}
		switch {
		case a.LastSeen != nil && b.LastSeen != nil:
			if c := b.LastSeen.Compare(*a.LastSeen); c != 0 {
				return c
			}
		case a.LastSeen != nil:
			return -1
		case b.LastSeen != nil:
			return 1
		}
		return b.Joined.Compare(a.Joined)
	})
	total := len(out)
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, total
}
