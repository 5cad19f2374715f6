package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edgecr/edgecr/agent"
)

// The fleet is the identities side of the soak: one goroutine creates
// join tokens (edgecrd token create), joins sandboxed clients with the
// real agent (edgecr join --root, its own hosts file, trust store, Docker
// config and credential store under the work dir: the machine is not
// touched), makes them leave (edgecr leave), revokes them (edgecrd
// clients revoke), removes tokens (edgecrd token rm), tries a removed or
// used-up token (must be refused) and probes credentials (GET /v2/: 200
// for a live client, 401 for a revoked one). Its ledger holds what was
// acknowledged; the checks find any identity or token lost or resurrected.

// Fleet ledger states.
const (
	idActive  = "active"
	idRevoked = "revoked"
	idAbsent  = "absent" // a join that may not have happened
)

type clientRec struct {
	name, id         string
	user, secret     string          // its credential (from its credential store), for probes
	state            string          // acknowledged state; "" when uncertain
	possible         map[string]bool // non-nil: uncertain, one of these
	sandbox          string          // the client machine's dir
	joined, released bool            // joined: the agent holds the join; released: sandbox gone
}

type tokenRec struct {
	id, secret string
	uses, used int
	usedMax    int  // > used: a join with it has an unknown outcome
	removed    bool // acknowledged removal
	maybeGone  bool // a removal with an unknown outcome
}

type fleetLedger struct {
	mu           sync.Mutex
	clients      map[string]*clientRec // by name
	tokens       map[string]*tokenRec  // by id
	maybeTokens  int                   // creations with an unknown outcome
	joins, names int
}

func newFleetLedger() *fleetLedger {
	return &fleetLedger{clients: map[string]*clientRec{}, tokens: map[string]*tokenRec{}}
}

type fleet struct {
	dev    *device
	bin    string // dir of edgecr and docker-credential-edgecr
	dir    string // sandboxes
	l      *ledger
	fl     *fleetLedger
	st     *stats
	rnd    *rand.Rand
	gate   *sync.RWMutex
	probeC *http.Client
	// revokeBound is how long a revocation may take to apply: 0 on a data
	// dir (the next request), the documented 2 s on a bucket.
	revokeBound time.Duration
}

func newFleet(dev *device, binDir, dir string, l *ledger, st *stats, gate *sync.RWMutex) *fleet {
	return &fleet{dev: dev, bin: binDir, dir: dir, l: l, fl: newFleetLedger(), st: st, gate: gate,
		rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)),
		probeC: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: dev.roots, ServerName: "127.0.0.1"}, DisableKeepAlives: true}}}
}

func (f *fleet) run(ctx context.Context) {
	for ctx.Err() == nil {
		f.step(ctx)
		sleep(ctx, time.Duration(100+f.rnd.IntN(400))*time.Millisecond)
	}
}

// pick returns the records that match, in name order (for a seedable choice).
func (f *fleet) pick(match func(*clientRec) bool) *clientRec {
	f.fl.mu.Lock()
	defer f.fl.mu.Unlock()
	var c []*clientRec
	for _, r := range f.fl.clients {
		if match(r) {
			c = append(c, r)
		}
	}
	if len(c) == 0 {
		return nil
	}
	sort.Slice(c, func(i, j int) bool { return c[i].name < c[j].name })
	return c[f.rnd.IntN(len(c))]
}

// liveToken is a token with a certain use left, nil when there is none.
func (f *fleet) liveToken(dead bool) *tokenRec {
	f.fl.mu.Lock()
	defer f.fl.mu.Unlock()
	var c []*tokenRec
	for _, t := range f.fl.tokens {
		usable := !t.removed && !t.maybeGone && t.usedMax < t.uses
		gone := t.removed || t.used >= t.uses
		if !dead && usable || dead && gone {
			c = append(c, t)
		}
	}
	if len(c) == 0 {
		return nil
	}
	sort.Slice(c, func(i, j int) bool { return c[i].id < c[j].id })
	return c[f.rnd.IntN(len(c))]
}

func (f *fleet) step(ctx context.Context) {
	f.gate.RLock()
	defer f.gate.RUnlock()
	opCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	p := f.rnd.IntN(100)
	if f.liveToken(false) == nil && p < 45 {
		p = 0
	}
	active := func(r *clientRec) bool { return r.state == idActive && r.secret != "" }
	switch {
	case p < 12:
		f.tokenCreate(ctx, opCtx)
	case p < 40:
		f.join(ctx, opCtx)
	case p < 45:
		f.deadJoin(ctx, opCtx)
	case p < 60:
		if r := f.pick(func(r *clientRec) bool { return active(r) && r.joined }); r != nil {
			f.leave(ctx, opCtx, r)
		}
	case p < 70:
		if r := f.pick(active); r != nil {
			f.revoke(ctx, opCtx, r)
		}
	case p < 78:
		if t := f.liveToken(false); t != nil {
			f.tokenRm(ctx, opCtx, t)
		}
	default:
		if r := f.pick(func(r *clientRec) bool { return r.state != "" && r.secret != "" }); r != nil {
			start := time.Now()
			err := f.probe(opCtx, r, r.state)
			if ctx.Err() == nil {
				f.st.record("auth-probe", f.l, start, err)
			}
		}
	}
}

func (f *fleet) tokenCreate(ctx, opCtx context.Context) {
	uses := 1 + f.rnd.IntN(3)
	start := time.Now()
	out, err := f.dev.admin(opCtx, "token", "create", "-o", "json", "--uses", fmt.Sprint(uses), "--ttl", "24h", "--role", "push")
	var tk struct{ Token, ID string }
	if err == nil {
		if jerr := json.Unmarshal(out, &tk); jerr != nil || tk.ID == "" || tk.Token == "" {
			err = fmt.Errorf("edgecrd token create -o json: unexpected output %q: %v", out, jerr)
		}
	}
	f.fl.mu.Lock()
	if err == nil {
		f.fl.tokens[tk.ID] = &tokenRec{id: tk.ID, secret: tk.Token, uses: uses}
	} else {
		f.fl.maybeTokens++
	}
	f.fl.mu.Unlock()
	if ctx.Err() == nil {
		f.st.record("token-create", f.l, start, err)
	}
}

func (f *fleet) tokenRm(ctx, opCtx context.Context, t *tokenRec) {
	start := time.Now()
	_, err := f.dev.admin(opCtx, "token", "rm", t.id)
	f.fl.mu.Lock()
	if err == nil {
		t.removed = true
	} else {
		t.maybeGone = true
	}
	f.fl.mu.Unlock()
	if ctx.Err() == nil {
		f.st.record("token-rm", f.l, start, err)
	}
}

// newSandbox makes a client machine: a root with a hosts file and an
// (empty) Debian trust store, a Docker config and a credential store.
func (f *fleet) newSandbox(name string) (string, error) {
	dir := filepath.Join(f.dir, name)
	for _, d := range []string{"root/etc/ssl/certs", "root/usr/local/share/ca-certificates", "docker", "cred"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return "", fmt.Errorf("creating the sandbox of %s: %w", name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "root/etc/hosts"), []byte("127.0.0.1\tlocalhost\n"), 0o644); err != nil {
		return "", fmt.Errorf("creating the sandbox of %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "docker/config.json"), []byte("{}\n"), 0o600); err != nil {
		return "", fmt.Errorf("creating the sandbox of %s: %w", name, err)
	}
	return dir, nil
}

// edgecr runs the agent as the client machine in sandbox.
func (f *fleet) edgecr(ctx context.Context, sandbox string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(f.bin, "edgecr"), append(args, "--root", filepath.Join(sandbox, "root"), "-o", "json")...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(sandbox, "docker"),
		"EDGECR_CONFIG_DIR="+filepath.Join(sandbox, "cred"),
		"PATH="+f.bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("edgecr %s: %w: %s", args[0], err, lastLine(errb.String()))
	}
	return out.Bytes(), nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

func (f *fleet) nextName() string {
	f.fl.mu.Lock()
	defer f.fl.mu.Unlock()
	f.fl.names++
	return fmt.Sprintf("soak-c%d", f.fl.names)
}

func (f *fleet) join(ctx, opCtx context.Context) {
	t := f.liveToken(false)
	if t == nil {
		return
	}
	name := f.nextName()
	sb, err := f.newSandbox(name)
	start := time.Now()
	var out []byte
	if err == nil {
		out, err = f.edgecr(opCtx, sb, "join", "https://"+f.dev.addr, "--token", t.secret, "--name", name)
	}
	var res struct{ ClientID, Registry string }
	if err == nil {
		if jerr := json.Unmarshal(out, &res); jerr != nil || res.ClientID == "" {
			err = fmt.Errorf("edgecr join -o json: unexpected output %q: %v", out, jerr)
		}
	}
	r := &clientRec{name: name, sandbox: sb}
	if err == nil {
		r.id, r.state, r.joined = res.ClientID, idActive, true
		r.user, r.secret, err = readCredential(sb, res.Registry)
	}
	inWindow := f.l.inWindow(start, time.Now())
	f.fl.mu.Lock()
	if r.state == idActive {
		t.used++
		if t.usedMax < t.used {
			t.usedMax = t.used
		}
		if inWindow {
			// The device spends the use before it writes the client, and
			// a failure between the two loses the use (server.Redeem);
			// the agent retries a 503 with the same token: a join that
			// met a fault may have spent a use per attempt.
			t.usedMax += agent.DefaultRetry.Attempts - 1
		}
	} else {
		// A join that fails after the device made the client revokes it
		// as it rolls back: any state.
		r.possible = map[string]bool{idAbsent: true, idActive: true, idRevoked: true}
		t.usedMax += agent.DefaultRetry.Attempts // each attempt may have spent one
	}
	f.fl.clients[name] = r
	f.fl.mu.Unlock()
	if ctx.Err() == nil {
		f.st.record("join", f.l, start, err)
	}
}

// deadJoin joins with a removed or used-up token: the device must refuse.
func (f *fleet) deadJoin(ctx, opCtx context.Context) {
	t := f.liveToken(true)
	if t == nil {
		return
	}
	name := f.nextName()
	sb, err := f.newSandbox(name)
	if err != nil {
		f.st.record("join (dead token)", f.l, time.Now(), err)
		return
	}
	defer os.RemoveAll(sb)
	start := time.Now()
	out, err := f.edgecr(opCtx, sb, "join", "https://"+f.dev.addr, "--token", t.secret, "--name", name)
	if ctx.Err() != nil {
		return
	}
	switch {
	case err == nil:
		var res struct{ ClientID string }
		json.Unmarshal(out, &res)
		f.fl.mu.Lock()
		// Known, so that the check does not count it twice.
		f.fl.clients[name] = &clientRec{name: name, id: res.ClientID, possible: map[string]bool{idActive: true, idRevoked: true, idAbsent: true}, released: true}
		f.fl.mu.Unlock()
		f.st.record("join (dead token)", f.l, start, errWrong{fmt.Errorf("a join with token %s (removed or used up) succeeded as %s", t.id, res.ClientID)})
	case strings.Contains(err.Error(), "token"):
		f.st.refused("join (dead token)", start)
	default:
		f.st.record("join (dead token)", f.l, start, err)
	}
}

// readCredential is the client's credential for registry from its store.
func readCredential(sandbox, registry string) (string, string, error) {
	b, err := os.ReadFile(filepath.Join(sandbox, "cred", "credentials.json"))
	if err != nil {
		return "", "", fmt.Errorf("reading the joined client's credential store: %w", err)
	}
	var cf struct {
		Registries map[string]struct{ Username, Secret string }
	}
	if err := json.Unmarshal(b, &cf); err != nil {
		return "", "", fmt.Errorf("parsing the joined client's credential store: %w", err)
	}
	c, ok := cf.Registries[registry]
	if !ok || c.Secret == "" {
		return "", "", fmt.Errorf("the joined client's credential store has no credential for %s", registry)
	}
	return c.Username, c.Secret, nil
}

func (f *fleet) leave(ctx, opCtx context.Context, r *clientRec) {
	start := time.Now()
	out, err := f.edgecr(opCtx, r.sandbox, "leave")
	var res []struct {
		Revoked bool
		Done    bool
	}
	if err == nil {
		if jerr := json.Unmarshal(out, &res); jerr != nil || len(res) != 1 {
			err = fmt.Errorf("edgecr leave -o json: unexpected output %q: %v", out, jerr)
		} else if !res[0].Revoked {
			err = fmt.Errorf("edgecr leave of %s did not revoke it on the device: %s", r.id, out)
		}
	}
	f.settleRevoke(r, err)
	if ctx.Err() == nil {
		f.st.record("leave", f.l, start, err)
		if err == nil {
			f.probeAfterRevoke(ctx, r)
		}
	}
}

func (f *fleet) revoke(ctx, opCtx context.Context, r *clientRec) {
	start := time.Now()
	_, err := f.dev.admin(opCtx, "clients", "revoke", r.id)
	f.settleRevoke(r, err)
	if ctx.Err() == nil {
		f.st.record("revoke", f.l, start, err)
		if err == nil {
			f.probeAfterRevoke(ctx, r)
		}
	}
}

// probeAfterRevoke: a revocation applies from the next request on (a
// data dir) or within revokeBound (a bucket: every replica within 2 s).
// The time it took is the "revocation applied" row's.
func (f *fleet) probeAfterRevoke(ctx context.Context, r *clientRec) {
	start := time.Now()
	for {
		err := f.probe(ctx, r, idRevoked)
		if err != nil && isWrong(err) && time.Since(start) < f.revokeBound && sleep(ctx, 50*time.Millisecond) {
			continue
		}
		if ctx.Err() == nil {
			f.st.record("revocation applied", f.l, start, err)
		}
		return
	}
}

func (f *fleet) settleRevoke(r *clientRec, err error) {
	f.fl.mu.Lock()
	defer f.fl.mu.Unlock()
	r.joined = false
	if err == nil {
		r.state = idRevoked
		return
	}
	r.state, r.possible = "", map[string]bool{idActive: true, idRevoked: true}
}

// probe sends GET /v2/ with the client's credential: a live client gets
// 200, a revoked one 401 (or 429 once the address is throttled).
func (f *fleet) probe(ctx context.Context, r *clientRec, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+f.dev.addr+"/v2/", nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(r.user, r.secret)
	resp, err := f.probeC.Do(req)
	if err != nil {
		return fmt.Errorf("GET /v2/ as %s: %w", r.id, err)
	}
	resp.Body.Close()
	switch {
	case want == idActive && resp.StatusCode == http.StatusOK:
		return nil
	case want == idRevoked && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusTooManyRequests):
		// 429: the address spent its allowance of failed attempts; a
		// refusal all the same (valid credentials are not throttled).
		return nil
	case want == idRevoked && resp.StatusCode == http.StatusOK:
		return errWrong{fmt.Errorf("GET /v2/ as %s, revoked: 200, the revocation is lost", r.id)}
	case want == idActive && resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("GET /v2/ as %s, live: 401, the identity is lost", r.id)
	}
	return fmt.Errorf("GET /v2/ as %s (%s): %s", r.id, want, resp.Status)
}

// fleetCheck holds the device's clients and tokens against the ledger.
type fleetCheck struct {
	clients, active, revoked, uncertain int // ledger: joined clients, and by state
	tokens, removed                     int // ledger: tokens created, of which removed
	probes                              int // credentials probed
	lost, resurrected                   int
	problems                            []string
}

func (f *fleet) check(ctx context.Context) *fleetCheck {
	c := &fleetCheck{}
	out, err := f.dev.admin(ctx, "clients", "ls", "-o", "json")
	var listed []struct {
		ID, Name, Kind string
		Revoked        bool
	}
	if err == nil {
		err = json.Unmarshal(out, &listed)
	}
	if err != nil {
		c.problems = append(c.problems, fmt.Sprintf("listing clients: %v", err))
		return c
	}
	out, err = f.dev.admin(ctx, "token", "ls", "-o", "json")
	var tokens []struct {
		ID         string
		Uses, Used int
	}
	if err == nil {
		err = json.Unmarshal(out, &tokens)
	}
	if err != nil {
		c.problems = append(c.problems, fmt.Sprintf("listing tokens: %v", err))
		return c
	}
	f.fl.mu.Lock()
	defer f.fl.mu.Unlock()
	seen := map[string]bool{}
	for _, cl := range listed {
		if cl.Kind != "client" {
			continue
		}
		seen[cl.Name] = true
		state := idActive
		if cl.Revoked {
			state = idRevoked
		}
		r, ok := f.fl.clients[cl.Name]
		switch {
		case !ok:
			c.resurrected++
			c.problems = append(c.problems, fmt.Sprintf("client %s (%s) is listed but was never joined", cl.ID, cl.Name))
		case r.state == idRevoked && state == idActive:
			c.resurrected++
			c.problems = append(c.problems, fmt.Sprintf("client %s (%s): its revocation was acknowledged, it is listed live", cl.ID, cl.Name))
		case r.state == idActive && state == idRevoked:
			c.lost++
			c.problems = append(c.problems, fmt.Sprintf("client %s (%s): live in the ledger, listed revoked", cl.ID, cl.Name))
		case r.state == "" && !r.possible[state]:
			c.problems = append(c.problems, fmt.Sprintf("client %s (%s) is %s, none of its possible states", cl.ID, cl.Name, state))
		case r.id != "" && r.id != cl.ID:
			c.problems = append(c.problems, fmt.Sprintf("client %s is listed as %s, joined as %s", cl.Name, cl.ID, r.id))
		}
	}
	names := make([]string, 0, len(f.fl.clients))
	for n := range f.fl.clients {
		names = append(names, n)
	}
	sort.Strings(names)
	var probe []*clientRec
	for _, n := range names {
		r := f.fl.clients[n]
		c.clients++
		switch r.state {
		case idActive:
			c.active++
		case idRevoked:
			c.revoked++
		default:
			c.uncertain++
		}
		if r.state != "" && !seen[n] {
			c.lost++
			c.problems = append(c.problems, fmt.Sprintf("client %s (%s, %s) was acknowledged and is not listed", r.id, n, r.state))
		}
		if r.state == "" && !r.possible[idAbsent] && !seen[n] {
			c.lost++
			c.problems = append(c.problems, fmt.Sprintf("client %s (%s) is gone, though every outcome keeps it", r.id, n))
		}
		if r.state != "" && r.secret != "" {
			probe = append(probe, r)
		}
	}
	unknown := 0
	tseen := map[string]bool{}
	for _, t := range tokens {
		tseen[t.ID] = true
		r, ok := f.fl.tokens[t.ID]
		switch {
		case !ok:
			unknown++
		case r.removed:
			c.resurrected++
			c.problems = append(c.problems, fmt.Sprintf("token %s: its removal was acknowledged, it is listed", t.ID))
		case t.Used < r.used || t.Used > r.usedMax:
			c.problems = append(c.problems, fmt.Sprintf("token %s: used %d, the ledger says %d..%d", t.ID, t.Used, r.used, r.usedMax))
		}
	}
	if unknown > f.fl.maybeTokens {
		c.resurrected += unknown - f.fl.maybeTokens
		c.problems = append(c.problems, fmt.Sprintf("%d tokens listed that were never created (%d creations had an unknown outcome)", unknown, f.fl.maybeTokens))
	}
	for _, r := range f.fl.tokens {
		c.tokens++
		if r.removed {
			c.removed++
			continue
		}
		if !r.maybeGone && !tseen[r.id] {
			c.lost++
			c.problems = append(c.problems, fmt.Sprintf("token %s was acknowledged and is not listed", r.id))
		}
	}
	f.fl.mu.Unlock()
	for _, r := range probe {
		c.probes++
		if err := f.probe(ctx, r, r.state); err != nil {
			c.problems = append(c.problems, err.Error())
			if r.state == idRevoked {
				c.resurrected++
			} else {
				c.lost++
			}
		}
	}
	f.fl.mu.Lock()
	return c
}
