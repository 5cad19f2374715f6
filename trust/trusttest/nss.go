package trusttest

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
)

// NSS emulates certutil on NSS databases kept in memory, by directory: -L
// -n NAME -a (the certificates under NAME as PEM, or certutil's "could not
// find cert" failure), -A (reads -i's file) and -D. A directory must be
// created (Create) before use, as certutil -N would.
type NSS struct {
	mu  sync.Mutex
	dbs map[string]map[string][][]byte // dir -> nickname -> DERs
}

// NewNSS returns an emulator with no database.
func NewNSS() *NSS { return &NSS{dbs: map[string]map[string][][]byte{}} }

// Create makes an empty database at dir.
func (n *NSS) Create(dir string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dbs[dir] = map[string][][]byte{}
}

// Names returns the nicknames in the database at dir.
func (n *NSS) Names(dir string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for k := range n.dbs[dir] {
		out = append(out, k)
	}
	return out
}

// Add puts a certificate (PEM) in the database at dir, as a user would.
func (n *NSS) Add(dir, name string, pemBytes []byte) {
	b, _ := pem.Decode(pemBytes)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dbs[dir][name] = append(n.dbs[dir][name], b.Bytes)
}

// Respond is a Runner.Respond answering certutil; a failure's error
// carries the output, as trust.ExecRunner's does.
func (n *NSS) Respond(name string, args []string) ([]byte, error) {
	if name != "certutil" || len(args) == 0 {
		return nil, fmt.Errorf("emulator: unexpected command %s %v", name, args)
	}
	flags := map[string]string{}
	for i := 1; i < len(args); i++ {
		if strings.HasPrefix(args[i], "-") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			flags[args[i]] = args[i+1]
			i++
		}
	}
	dir, ok := strings.CutPrefix(flags["-d"], "sql:")
	n.mu.Lock()
	defer n.mu.Unlock()
	db := n.dbs[dir]
	if !ok || db == nil {
		msg := "certutil: function failed: SEC_ERROR_BAD_DATABASE: security library: bad database."
		return []byte(msg + "\n"), errors.New("exit status 255: " + msg)
	}
	nick := flags["-n"]
	notFound := func() ([]byte, error) {
		msg := "certutil: Could not find cert: " + nick + "\n: PR_FILE_NOT_FOUND_ERROR: File not found"
		return []byte(msg + "\n"), errors.New("exit status 255: " + msg)
	}
	switch args[0] {
	case "-L":
		if len(db[nick]) == 0 {
			return notFound()
		}
		var out bytes.Buffer
		for _, der := range db[nick] {
			_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
		return out.Bytes(), nil
	case "-A":
		b, err := os.ReadFile(flags["-i"])
		if err != nil {
			return nil, err
		}
		blk, _ := pem.Decode(b)
		if blk == nil || flags["-t"] == "" {
			return []byte("certutil: bad input\n"), errors.New("exit status 255: certutil: bad input")
		}
		db[nick] = append(db[nick], blk.Bytes)
		return nil, nil
	case "-D":
		if len(db[nick]) == 0 {
			return notFound()
		}
		db[nick] = db[nick][1:]
		if len(db[nick]) == 0 {
			delete(db, nick)
		}
		return nil, nil
	}
	return nil, fmt.Errorf("emulator: unexpected certutil %v", args)
}
