package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// certWait bounds how long a starting replica waits for a serving
// certificate while another replica holds the reissue lease.
const certWait = certLeaseFor + 15*time.Second

// initReplica checks this replica's addresses against the CA and prepares
// its registration: a replica whose address the CA may not certify could
// not be named in the serving certificate, so it refuses to start.
func (s *Server) initReplica() error {
	o, st := s.opts, s.state
	if len(o.ReplicaIPs) == 0 {
		return fmt.Errorf("starting replica on %s: no address of its own: give the replica's --ip (the addresses clients reach this node at)", st.S3())
	}
	for _, ip := range o.ReplicaIPs {
		if err := st.CA.checkConstraints(st.Device.Host, []net.IP{ip}); err != nil {
			return fmt.Errorf("starting replica with --ip %s: %w", ip, err)
		}
	}
	id := o.ReplicaID
	if id == "" {
		id = DefaultReplicaID(o.ReplicaIPs)
	}
	host, _ := os.Hostname()
	self := Replica{ID: id, Port: st.Device.Port, Version: o.Version, Hostname: host, Started: o.Now().UTC()}
	for _, ip := range o.ReplicaIPs {
		self.IPs = append(self.IPs, ip.String())
	}
	rs, err := newReplicaSet(st.KV(), self, s.log, o.Now)
	if err != nil {
		return err
	}
	s.replicas = rs
	s.rcert = &replicaCert{store: st.KV(), ca: st.CA, holder: rs.self.Instance, lifetime: o.CertLifetime, now: o.Now}
	return nil
}

// startReplica registers the replica (with the port it listens on) and
// loads, or reissues, a serving certificate that names it.
func (s *Server) startReplica(ctx context.Context) error {
	if a, ok := s.ln.Addr().(*net.TCPAddr); ok {
		s.replicas.self.Port = a.Port
	}
	rctx, cancel := context.WithTimeout(ctx, certWait)
	defer cancel()
	if err := s.replicas.register(rctx); err != nil {
		return err
	}
	// Wait for a certificate that names this replica: while another
	// replica holds the reissue lease (it noticed us and is reissuing, or
	// it is reissuing for itself), the pair in the store does not name us
	// yet. When the lease holder died, its lease expires within
	// certLeaseFor and we reissue ourselves.
	for {
		err := s.syncReplica(rctx)
		cur := s.cert.Load()
		if cur != nil && s.certNamesSelf(cur) {
			return nil
		}
		select {
		case <-rctx.Done():
			if cur != nil {
				// Serve what there is: the other addresses work, and the
				// loop keeps trying to have ours named.
				s.log.Warn("replica starts with a serving certificate that does not name it yet; clients that reach it by its own address fail TLS until the certificate is reissued", "replica", s.replicas.self.ID, "ips", cur.Leaf.IPAddresses, "err", err)
				return nil
			}
			s.deregister()
			if err == nil {
				err = rctx.Err()
			}
			return fmt.Errorf("starting replica %s: no serving certificate that names it: %w", s.replicas.self.ID, err)
		case <-time.After(s.opts.ReplicaPoll / 4):
		}
	}
}

// certNamesSelf reports whether cert names every address of this replica.
func (s *Server) certNamesSelf(cert *tls.Certificate) bool {
	if cert.Leaf == nil {
		return false
	}
	for _, a := range s.replicas.self.IPs {
		if ip := net.ParseIP(a); ip != nil && !slices.ContainsFunc(cert.Leaf.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

// replicaLoop heartbeats, re-reads the replica list and keeps the serving
// certificate in step, until ctx ends; then it deregisters.
func (s *Server) replicaLoop(ctx context.Context) {
	defer s.loops.Done()
	defer s.deregister()
	t := time.NewTicker(s.opts.ReplicaPoll)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, replicaCallTimeout)
		err := s.replicas.heartbeat(rctx)
		if err == nil {
			err = s.syncReplica(rctx)
		} else {
			_ = s.syncReplica(rctx) // keep the certificate in step even so
		}
		cancel()
		// Say it once when it starts failing and once when it recovers:
		// every couple of seconds would drown the log.
		switch {
		case err != nil && err.Error() != lastErr && ctx.Err() == nil:
			s.log.Warn("replica heartbeat or certificate check failed; retrying", "replica", s.replicas.self.ID, "err", err)
			lastErr = err.Error()
		case err == nil && lastErr != "":
			s.log.Info("replica heartbeat and certificate check work again", "replica", s.replicas.self.ID)
			lastErr = ""
		}
	}
}

// syncReplica re-reads the replica list and makes the serving certificate
// name the device's host and IPs and every live replica's addresses.
func (s *Server) syncReplica(ctx context.Context) error {
	list, err := s.replicas.refresh(ctx)
	if err != nil {
		return err
	}
	d := s.state.Device
	need := d.netIPs()
	for _, a := range LiveAddresses(list, s.opts.Now()) {
		need = appendIP(need, net.ParseIP(a))
	}
	for _, a := range s.replicas.self.IPs { // before our record is listed
		need = appendIP(need, net.ParseIP(a))
	}
	// A reissue names every registered replica, live or not: one that is
	// restarting keeps its name and does not trigger another reissue.
	issue := slices.Clone(need)
	for _, r := range list {
		for _, a := range r.IPs {
			if ip := net.ParseIP(a); ip != nil && s.state.CA.checkConstraints(d.Host, []net.IP{ip}) == nil {
				issue = appendIP(issue, ip)
			}
		}
	}
	changed, err := s.rcert.sync(ctx, d.Host, need, issue)
	if changed && s.rcert.cur != nil {
		if old := s.cert.Swap(s.rcert.cur); old != nil {
			s.log.Info("server certificate changed", "ips", s.rcert.cur.Leaf.IPAddresses, "notAfter", s.rcert.cur.Leaf.NotAfter)
		}
	}
	return err
}

func appendIP(ips []net.IP, ip net.IP) []net.IP {
	if ip == nil || slices.ContainsFunc(ips, ip.Equal) {
		return ips
	}
	return append(ips, ip)
}

// deregister removes this replica's record (a clean shutdown), bounded in
// time: a store that does not answer leaves the record to expire.
func (s *Server) deregister() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.replicas.deregister(ctx); err != nil {
		s.log.Warn("deregistering replica; its record expires by itself", "replica", s.replicas.self.ID, "err", err)
	}
}

// ReplicaHealth is a replica's record with what a probe of it found.
type ReplicaHealth struct {
	Replica
	Live    bool   `json:"live"`
	Healthy bool   `json:"healthy"`
	Problem string `json:"problem,omitempty"` // why it is not healthy
}

// ProbeTimeout bounds one replica health probe.
const ProbeTimeout = 2 * time.Second

// ProbeReplicas probes each replica's /healthz at each of its addresses
// over TLS, verifying the registry host's certificate against the CA, each
// within ProbeTimeout; a replica is healthy when one address answers 200.
// Probes run in parallel.
func ProbeReplicas(ctx context.Context, ca *x509.Certificate, host string, rs []Replica, now time.Time) []ReplicaHealth {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	out := make([]ReplicaHealth, len(rs))
	done := make(chan struct{}, len(rs))
	for i, r := range rs {
		out[i] = ReplicaHealth{Replica: r, Live: r.Live(now)}
		go func() {
			defer func() { done <- struct{}{} }()
			var problems []string
			for _, ip := range r.IPs {
				err := probe(ctx, pool, host, net.JoinHostPort(ip, strconv.Itoa(r.Port)))
				if err == nil {
					out[i].Healthy, problems = true, nil
					break
				}
				problems = append(problems, err.Error())
			}
			if !out[i].Healthy {
				out[i].Problem = strings.Join(problems, "; ")
			}
		}()
	}
	for range rs {
		<-done
	}
	return out
}

func probe(ctx context.Context, pool *x509.CertPool, host, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("probing %s: %w", addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probing %s: %s", addr, resp.Status)
	}
	return nil
}
