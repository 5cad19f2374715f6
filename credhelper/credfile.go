package credhelper

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// credFileVersion is the format version this package writes and reads.
const credFileVersion = 1

// credFile is the JSON document of the store:
//
//	{
//	  "version": 1,
//	  "registries": {
//	    "ecr.dev1.example:31001": {"username": "client-1", "secret": "…"}
//	  }
//	}
//
// Keys are normalised host[:port] (see normalizeServerURL).
type credFile struct {
	Version    int                  `json:"version"`
	Registries map[string]credEntry `json:"registries"`
}

type credEntry struct {
	Username string `json:"username"`
	Secret   string `json:"secret"`
}

// decodeCredFile parses the store's file. Empty content is an empty store.
// Errors never quote the content (see malformed).
func decodeCredFile(data []byte) (credFile, error) {
	f := credFile{Version: credFileVersion, Registries: map[string]credEntry{}}
	if len(bytes.TrimSpace(data)) == 0 {
		return f, nil
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return credFile{}, malformed(err)
	}
	if f.Version > credFileVersion {
		return credFile{}, fmt.Errorf("unsupported format version %d (this edgecr reads up to %d)", f.Version, credFileVersion)
	}
	if f.Registries == nil {
		f.Registries = map[string]credEntry{}
	}
	return f, nil
}

// encode renders f the same way every time (sorted keys), so that an
// unchanged store is byte-identical.
func (f credFile) encode() []byte {
	f.Version = credFileVersion
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		panic(err) // strings and maps of strings always marshal
	}
	return append(b, '\n')
}
