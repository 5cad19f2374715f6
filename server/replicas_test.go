package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecr/edgecr/server/kv"
	"github.com/edgecr/edgecr/server/kv/kvtest"
)

// stores runs f against a kv.Dir and against a kv.S3 on a MinIO the test
// starts (skipped without the MinIO binary).
func stores(t *testing.T, f func(t *testing.T, open func(t *testing.T) kv.Store)) {
	t.Run("dir", func(t *testing.T) {
		f(t, func(t *testing.T) kv.Store {
			d, err := kv.OpenDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return d
		})
	})
	t.Run("s3", func(t *testing.T) {
		m := kvtest.StartMinIO(t)
		m.SetCredentials(t)
		bucket := m.CreateBucket(t)
		f(t, func(t *testing.T) kv.Store {
			s, err := kv.NewS3(kv.S3Config{Bucket: bucket, KeyPrefix: "site/edgecr/state/", Endpoint: m.Endpoint, Region: m.Region})
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newTestReplica(t *testing.T, store kv.Store, id, host string, clock *fakeClock, ips ...string) *replicaSet {
	t.Helper()
	rs, err := newReplicaSet(store, Replica{ID: id, IPs: ips, Port: 31001, Hostname: host, Started: clock.now()}, discard(), clock.now)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestReplicaRegistration: replicas see each other, heartbeats keep them
// live, a stopped heartbeat makes one dead after ReplicaLiveFor, a clean
// stop removes the record, and an id held by a live serve elsewhere is
// refused while a restart on the same machine takes its record over.
func TestReplicaRegistration(t *testing.T) {
	stores(t, func(t *testing.T, open func(t *testing.T) kv.Store) {
		ctx := context.Background()
		store := open(t)
		clock := &fakeClock{t: time.Now()}
		a := newTestReplica(t, store, "127.0.0.11", "node-a", clock, "127.0.0.11")
		b := newTestReplica(t, store, "127.0.0.12", "node-b", clock, "127.0.0.12", "::1")
		for _, r := range []*replicaSet{a, b} {
			if err := r.register(ctx); err != nil {
				t.Fatal(err)
			}
		}
		list, err := a.refresh(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].ID != "127.0.0.11" || list[1].ID != "127.0.0.12" {
			t.Fatalf("replicas = %+v, want 127.0.0.11 and 127.0.0.12", list)
		}
		if got, want := strings.Join(a.liveAddresses(), ","), "127.0.0.11,127.0.0.12,::1"; got != want {
			t.Errorf("live addresses = %s, want %s", got, want)
		}

		// b stops heartbeating; a goes on.
		clock.add(10 * time.Second)
		if err := a.heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
		clock.add(6 * time.Second)
		if _, err := a.refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(a.liveAddresses(), ","), "127.0.0.11"; got != want {
			t.Errorf("live addresses after b's heartbeat is 16 s old = %s, want %s", got, want)
		}
		all, err := ListReplicas(ctx, store)
		if err != nil || len(all) != 2 || !all[0].Live(clock.now()) || all[1].Live(clock.now()) {
			t.Fatalf("ListReplicas = %+v, %v; want a live and b dead", all, err)
		}

		// A second serve on another machine claiming a's id is refused
		// while a is live; a restart of a on its own machine is not.
		intruder := newTestReplica(t, store, "127.0.0.11", "node-x", clock, "127.0.0.11")
		if err := intruder.register(ctx); !errors.Is(err, ErrReplicaInUse) || !strings.Contains(err.Error(), "node-x") && !strings.Contains(err.Error(), "node-a") {
			t.Fatalf("register over a live replica of another machine: %v, want ErrReplicaInUse naming the machine", err)
		}
		restart := newTestReplica(t, store, "127.0.0.11", "node-a", clock, "127.0.0.11")
		if err := restart.register(ctx); err != nil {
			t.Fatalf("register after a restart on the same machine: %v", err)
		}
		// The old process (if it still ran) finds its key taken and stops.
		if err := a.heartbeat(ctx); err == nil || !strings.Contains(err.Error(), "registered by another serve") {
			t.Fatalf("heartbeat of the replaced process: %v, want it to say it was replaced", err)
		}
		if err := a.heartbeat(ctx); err != nil {
			t.Fatalf("heartbeat after being replaced: %v, want a quiet no-op", err)
		}
		// A dead record of another machine is taken over.
		x := newTestReplica(t, store, "127.0.0.12", "node-x", clock, "127.0.0.12")
		if err := x.register(ctx); err != nil {
			t.Fatalf("register over a dead record: %v", err)
		}

		// A clean stop removes the record; the replaced process removes nothing.
		if err := a.deregister(ctx); err != nil {
			t.Fatal(err)
		}
		if err := restart.deregister(ctx); err != nil {
			t.Fatal(err)
		}
		all, err = ListReplicas(ctx, store)
		if err != nil || len(all) != 1 || all[0].ID != "127.0.0.12" || all[0].Hostname != "node-x" {
			t.Fatalf("after deregistering 127.0.0.11: %+v, %v", all, err)
		}

		// A record dead for longer than replicaForgetAfter is removed.
		clock.add(replicaForgetAfter + time.Minute)
		if err := restart.register(ctx); err != nil {
			t.Fatal(err)
		}
		if list, err := restart.refresh(ctx); err != nil || len(list) != 1 {
			t.Fatalf("refresh after an hour: %+v, %v; want only the live replica", list, err)
		}
		if all, _ := ListReplicas(ctx, store); len(all) != 1 {
			t.Errorf("records after an hour: %+v, want the dead one forgotten", all)
		}
	})
}

func TestReplicaIDs(t *testing.T) {
	for _, id := range []string{"127.0.0.11", "fd00::1", "node-a", "n1.site_2"} {
		if err := CheckReplicaID(id); err != nil {
			t.Errorf("CheckReplicaID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", "-a", "a/b", "a b", strings.Repeat("a", 64), "é"} {
		if err := CheckReplicaID(id); err == nil {
			t.Errorf("CheckReplicaID(%q) = nil, want an error", id)
		}
	}
	if got := DefaultReplicaID([]net.IP{net.ParseIP("10.0.0.7"), net.ParseIP("10.0.0.8")}); got != "10.0.0.7" {
		t.Errorf("DefaultReplicaID = %q", got)
	}
}

func testCA(t *testing.T) *CA {
	t.Helper()
	st, err := Ensure(t.TempDir(), testOptions("dev"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return st.CA
}

func ips(ss ...string) []net.IP {
	var out []net.IP
	for _, s := range ss {
		out = append(out, net.ParseIP(s))
	}
	return out
}

// TestReplicaCertReissue: the first replica issues the shared pair, a
// second one takes it when it names it, a new address makes one reissue
// that the other picks up, a held lease keeps others from writing, and a
// half-written pair (a replica killed between key and certificate) is
// repaired once the lease expires.
func TestReplicaCertReissue(t *testing.T) {
	stores(t, func(t *testing.T, open func(t *testing.T) kv.Store) {
		ctx := context.Background()
		store := open(t)
		ca := testCA(t)
		clock := &fakeClock{t: time.Now()}
		host := "ecr.dev.internal"
		c1 := &replicaCert{store: store, ca: ca, holder: "one", lifetime: serverLifetime, now: clock.now}
		c2 := &replicaCert{store: store, ca: ca, holder: "two", lifetime: serverLifetime, now: clock.now}

		need := ips("127.0.0.11")
		if changed, err := c1.sync(ctx, host, need, need); err != nil || !changed {
			t.Fatalf("first sync: changed %v, %v", changed, err)
		}
		first := c1.cur.Leaf
		if changed, err := c2.sync(ctx, host, need, need); err != nil || !changed || !c2.cur.Leaf.Equal(first) {
			t.Fatalf("second replica: changed %v, %v; want the same certificate", changed, err)
		}
		if len(c1.cur.Certificate) != 2 {
			t.Errorf("chain of %d certificates, want leaf and CA", len(c1.cur.Certificate))
		}

		// A new replica at .12: c2 reissues, c1 picks it up by polling.
		need = ips("127.0.0.11", "127.0.0.12")
		if _, err := c2.sync(ctx, host, need, need); err != nil {
			t.Fatal(err)
		}
		if ok, why := certCovers(c2.cur.Leaf, ca, host, need, clock.now()); !ok {
			t.Fatalf("after reissue: %s", why)
		}
		if changed, err := c1.poll(ctx); err != nil || !changed || !c1.cur.Leaf.Equal(c2.cur.Leaf) {
			t.Fatalf("poll after reissue: changed %v, %v; want the reissued certificate", changed, err)
		}
		if changed, err := c1.poll(ctx); err != nil || changed {
			t.Fatalf("poll without a change: changed %v, %v", changed, err)
		}

		// A held lease: c1 does not write, even when its view is short.
		release, ok, err := takeLease(ctx, store, certLeaseKey, "other", certLeaseFor, clock.now())
		if err != nil || !ok {
			t.Fatalf("taking the lease: %v %v", ok, err)
		}
		more := ips("127.0.0.11", "127.0.0.12", "127.0.0.13")
		before := c1.cur.Leaf
		if _, err := c1.sync(ctx, host, more, more); err != nil {
			t.Fatal(err)
		}
		if !c1.cur.Leaf.Equal(before) {
			t.Fatal("reissued while another replica held the lease")
		}
		release()

		// A replica killed between writing the key and the certificate:
		// the key no longer matches; nobody serves the pair, and the next
		// sync (lease free) reissues.
		_, keyPEM, err := ca.issueServerCert(host, more, serverLifetime, clock.now())
		if err != nil {
			t.Fatal(err)
		}
		_, kv1, _ := store.Get(ctx, serverKeyFile)
		if _, err := store.Put(ctx, serverKeyFile, keyPEM, kv1); err != nil {
			t.Fatal(err)
		}
		// A stale lease of the killed replica: it blocks until it expires.
		stale, _ := json.Marshal(lease{Holder: "killed", Expires: clock.now().Add(certLeaseFor)})
		if _, err := store.Put(ctx, certLeaseKey, stale, ""); err != nil {
			t.Fatal(err)
		}
		fresh := &replicaCert{store: store, ca: ca, holder: "three", lifetime: serverLifetime, now: clock.now}
		if _, err := fresh.sync(ctx, host, more, more); err != nil {
			t.Fatal(err)
		}
		if fresh.cur != nil {
			t.Fatal("a replica took a pair whose key does not match its certificate")
		}
		clock.add(certLeaseFor + time.Second)
		if changed, err := fresh.sync(ctx, host, more, more); err != nil || !changed || fresh.cur == nil {
			t.Fatalf("sync after the stale lease expired: changed %v, %v", changed, err)
		}
		if ok, why := certCovers(fresh.cur.Leaf, ca, host, more, clock.now()); !ok {
			t.Fatal(why)
		}
		if _, err := c1.poll(ctx); err != nil || !c1.cur.Leaf.Equal(fresh.cur.Leaf) {
			t.Fatalf("c1 after the repair: %v", err)
		}
		if _, _, err := store.Get(ctx, certLeaseKey); !errors.Is(err, kv.ErrNotFound) {
			t.Errorf("lease after the reissue: %v, want it released", err)
		}
	})
}

// TestCertCovers: more addresses than needed are fine, a missing one, the
// host, another CA or a near expiry are not.
func TestCertCovers(t *testing.T) {
	ca := testCA(t)
	now := time.Now()
	host := "ecr.dev.internal"
	certPEM, keyPEM, err := ca.issueServerCert(host, ips("127.0.0.11", "127.0.0.12"), serverLifetime, now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseServerPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	other := testCA(t)
	for _, c := range []struct {
		name string
		ca   *CA
		host string
		need []net.IP
		now  time.Time
		want bool
	}{
		{"subset", ca, host, ips("127.0.0.12"), now, true},
		{"exact", ca, host, ips("127.0.0.11", "127.0.0.12"), now, true},
		{"missing address", ca, host, ips("127.0.0.13"), now, false},
		{"other host", ca, "ecr.other.internal", nil, now, false},
		{"other CA", other, host, nil, now, false},
		{"near expiry", ca, host, nil, now.Add(serverLifetime - 24*time.Hour), false},
	} {
		if got, why := certCovers(p.Leaf, c.ca, c.host, c.need, c.now); got != c.want {
			t.Errorf("%s: covers = %v (%s), want %v", c.name, got, why, c.want)
		}
	}
}

// replicaState is the device whose state is in store, as a replica on a
// bucket sees it (State.S3 set), the first call creating it; its images
// stay in a data dir of its own (imagesInDir: the location is not a real
// bucket, and nothing may be sent to it).
func replicaState(t *testing.T, store kv.Store) *State {
	t.Helper()
	s := &State{Dir: t.TempDir(), kv: store, loc: &kv.S3Location{Bucket: "test", Region: "us-east-1"}, imagesInDir: true}
	st, err := ensure(s, testOptions("test"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(st.StorageDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	return st
}

type replicaServer struct {
	srv    *Server
	cancel context.CancelFunc
	done   chan error
}

func startReplicaServer(t *testing.T, st *State, ip string) *replicaServer {
	t.Helper()
	r, err := newReplicaServer(t, st, ip)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// newReplicaServer starts a server on st at ip with a short replica poll;
// it stops when t ends. Safe to call from any goroutine.
func newReplicaServer(t *testing.T, st *State, ip string) (*replicaServer, error) {
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, st, Options{
		Listen: ip + ":0", Logger: discard(), ReplicaIPs: ips(ip), ReplicaPoll: 100 * time.Millisecond,
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("starting replica %s: %w", ip, err)
	}
	r := &replicaServer{srv: srv, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- srv.Serve(ctx) }()
	t.Cleanup(r.stop)
	return r, nil
}

func (r *replicaServer) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	r.cancel = nil
}

// servedIPs does a TLS handshake with addr, verifying the registry host
// against the CA, and returns the IP addresses the served certificate names.
func servedIPs(t *testing.T, st *State, addr string) []string {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(st.CA.Cert)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: st.Device.Host})
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer conn.Close()
	var out []string
	for _, ip := range conn.ConnectionState().PeerCertificates[0].IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

// joinVia redeems token at a replica and returns its answer.
func joinVia(t *testing.T, st *State, addr, token string) JoinResponse {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(st.CA.Cert)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: st.Device.Host}}}
	defer c.CloseIdleConnections()
	body, _ := json.Marshal(JoinRequest{Token: token, Name: "client"})
	resp, err := c.Post("https://"+addr+APIJoin, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jr JoinResponse
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("join: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&jr); err != nil {
		t.Fatal(err)
	}
	return jr
}

func namesAll(ips []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, ip := range ips {
			found = found || ip == w
		}
		if !found {
			return false
		}
	}
	return true
}

// TestReplicasServeOneCertificate: two servers on one shared state, at
// 127.0.0.11 and 127.0.0.12, see each other and both serve a certificate
// that names both addresses within a few seconds, without a restart; a
// clean stop removes a replica's record.
func TestReplicasServeOneCertificate(t *testing.T) {
	stores(t, func(t *testing.T, open func(t *testing.T) kv.Store) {
		store := open(t)
		st1 := replicaState(t, store)
		st2 := replicaState(t, store)
		r1 := startReplicaServer(t, st1, "127.0.0.11")
		if got := servedIPs(t, st1, r1.srv.Addr().String()); !namesAll(got, "127.0.0.11", "198.18.0.10") || namesAll(got, "127.0.0.12") {
			t.Fatalf("replica 1 alone serves a certificate for %v, want 127.0.0.11 and the device's 198.18.0.10", got)
		}
		start := time.Now()
		r2 := startReplicaServer(t, st2, "127.0.0.12")
		// The new replica serves its own address at once.
		if got := servedIPs(t, st2, r2.srv.Addr().String()); !namesAll(got, "127.0.0.11", "127.0.0.12") {
			t.Fatalf("replica 2 serves a certificate for %v, want both", got)
		}
		for {
			got := servedIPs(t, st1, r1.srv.Addr().String())
			if namesAll(got, "127.0.0.11", "127.0.0.12") {
				t.Logf("replica 1 serves the certificate naming both after %s", time.Since(start).Round(time.Millisecond))
				break
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("replica 1 still serves a certificate for %v after 5 s", got)
			}
			time.Sleep(50 * time.Millisecond)
		}
		ctx := context.Background()
		// Another start on the state (a replica restarting, an admin
		// command) keeps the certificate naming the replicas: it names
		// more than device.json's IPs, which is right on a bucket.
		crt, _, err := store.Get(ctx, serverCertFile)
		if err != nil {
			t.Fatal(err)
		}
		replicaState(t, store)
		if again, _, _ := store.Get(ctx, serverCertFile); !bytes.Equal(again, crt) {
			t.Error("a start on the state reissued the replicas' certificate")
		}
		if got := strings.Join(r1.srv.replicas.liveAddresses(), ","); got != "127.0.0.11,127.0.0.12" {
			t.Errorf("replica 1's live addresses = %s", got)
		}
		all, err := ListReplicas(ctx, store)
		if err != nil || len(all) != 2 {
			t.Fatalf("ListReplicas = %+v, %v", all, err)
		}
		// A join through replica 1 hands out both addresses, its own first,
		// and keeps "ips" as before for old clients.
		_, token, err := st1.CreateToken(TokenOptions{TTL: time.Hour, Uses: 1, Role: RolePull}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		jr := joinVia(t, st1, r1.srv.Addr().String(), token)
		if got := strings.Join(jr.Replicas, ","); got != "127.0.0.11,127.0.0.12" {
			t.Errorf("join response replicas = %q, want 127.0.0.11,127.0.0.12", got)
		}
		if got := strings.Join(jr.IPs, ","); got != "198.18.0.10" {
			t.Errorf("join response ips = %q, want the device's 198.18.0.10", got)
		}
		health := ProbeReplicas(ctx, st1.CA.Cert, st1.Device.Host, all, time.Now())
		for _, h := range health {
			if !h.Live || !h.Healthy {
				t.Errorf("replica %s: live %v healthy %v (%s)", h.ID, h.Live, h.Healthy, h.Problem)
			}
		}
		r2.stop()
		all, err = ListReplicas(ctx, store)
		if err != nil || len(all) != 1 || all[0].ID != "127.0.0.11" {
			t.Fatalf("after replica 2 stopped: %+v, %v; want its record removed", all, err)
		}
		// Its address stays in the certificate (no reissue for a stop);
		// the probe reports it unreachable.
		all = append(all, Replica{ID: "gone", IPs: []string{"127.0.0.12"}, Port: r2.srv.Addr().(*net.TCPAddr).Port})
		health = ProbeReplicas(ctx, st1.CA.Cert, st1.Device.Host, all, time.Now())
		if !health[0].Healthy || health[1].Healthy || health[1].Problem == "" {
			t.Errorf("probes after a stop: %+v", health)
		}
	})
}

// TestReplicaAddressOutsideCA: a replica whose address the device CA may
// not certify refuses to start, saying so.
func TestReplicaAddressOutsideCA(t *testing.T) {
	d, err := kv.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := replicaState(t, d)
	// 203.0.113.5 (TEST-NET-3) is not private: only named, never contacted.
	_, err = New(context.Background(), st, Options{Listen: "127.0.0.1:0", ReplicaIPs: ips("203.0.113.5")})
	if err == nil || !strings.Contains(err.Error(), "203.0.113.5") || !strings.Contains(err.Error(), "outside the ranges the device CA may certify") {
		t.Fatalf("New with a public replica address: %v", err)
	}
	_, err = New(context.Background(), st, Options{Listen: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "--ip") {
		t.Fatalf("New without replica addresses: %v", err)
	}
	if keys, _ := d.List(context.Background(), replicaPrefix, "", 10); len(keys) != 0 {
		t.Errorf("records after refused starts: %v", keys)
	}
}

// TestReplicasStartTogether: three replicas starting at the same moment
// (one wins the reissue lease, the others wait for its certificate) end up
// serving one certificate that names all three.
func TestReplicasStartTogether(t *testing.T) {
	stores(t, func(t *testing.T, open func(t *testing.T) kv.Store) {
		store := open(t)
		st1 := replicaState(t, store)
		addrs := []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}
		states := []*State{st1, replicaState(t, store), replicaState(t, store)}
		servers := make([]*replicaServer, len(addrs))
		errs := make([]error, len(addrs))
		var wg sync.WaitGroup
		for i := range addrs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				servers[i], errs[i] = newReplicaServer(t, states[i], addrs[i])
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for i, r := range servers {
			for {
				got := servedIPs(t, states[i], r.srv.Addr().String())
				if namesAll(got, addrs...) {
					break
				}
				if time.Since(start) > 10*time.Second {
					t.Fatalf("replica %s serves a certificate for %v after 10 s", addrs[i], got)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		t.Logf("all three serve a certificate naming all three %s after they started", time.Since(start).Round(time.Millisecond))
		var leaf *x509.Certificate
		for i, r := range servers {
			l := r.srv.cert.Load().Leaf
			if leaf != nil && !leaf.Equal(l) {
				t.Errorf("replica %s serves another certificate than replica %s", addrs[i], addrs[0])
			}
			leaf = l
		}
	})
}
