package agent_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/agent/agenttest"
	"golang.org/x/net/dns/dnsmessage"
)

var replicaIPs = []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}

// hostsBlock is edgecr's block of the hosts file, mapping the fake
// device's host to each of ips.
func hostsBlock(ips ...string) string {
	b := "# BEGIN edgecr ecr.box.internal\n"
	for _, ip := range ips {
		b += ip + " ecr.box.internal\n"
	}
	return b + "# END edgecr ecr.box.internal\n"
}

// TestJoinReplicas (issue 12): a device with three replicas gives the
// client every address; join writes one hosts line per address, status
// checks each and stays OK with a warning while one does not answer, a
// re-join after the replica set changed rewrites the lines without
// spending the token, and leave removes every line.
func TestJoinReplicas(t *testing.T) {
	e := newEnv(t, envOptions{device: agenttest.DeviceOptions{Replicas: replicaIPs}})
	before := e.snapshot()
	token := e.dev.Token(agenttest.TokenOptions{Uses: 2})
	res := e.mustJoin(token)
	if res.IP != "127.0.0.11" || !slices.Equal(res.Addrs, replicaIPs) {
		t.Errorf("join result ip %s, addrs %v; want 127.0.0.11 and %v", res.IP, res.Addrs, replicaIPs)
	}
	if hosts := e.read("etc/hosts"); !strings.Contains(hosts, hostsBlock(replicaIPs...)) {
		t.Errorf("hosts file:\n%s\nwant the block\n%s", hosts, hostsBlock(replicaIPs...))
	}
	out := e.output()
	for _, want := range []string{
		"✓ hosts: added 127.0.0.11, 127.0.0.12, 127.0.0.13 ecr.box.internal",
		"✓ verify: ecr.box.internal resolves to 127.0.0.11, 127.0.0.12, 127.0.0.13",
		"(at 127.0.0.11, 127.0.0.12, 127.0.0.13: 3 of 3 replicas)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	status := func() agent.RegistryStatus {
		t.Helper()
		rs, err := e.sys.Status(context.Background())
		if err != nil || len(rs) != 1 {
			t.Fatalf("status = %v, %v", rs, err)
		}
		return rs[0]
	}
	rs := status()
	if !rs.OK() {
		t.Fatalf("status with every replica up: %s", toJSON(t, rs))
	}
	for _, c := range rs.Checks {
		if c.Warning != "" {
			t.Errorf("check %s warns with every replica up: %s", c.Name, c.Warning)
		}
	}

	// One replica down: the registry is reachable, with a warning naming it.
	e.dev.StopReplica("127.0.0.12")
	rs = status()
	if !rs.OK() {
		t.Fatalf("status with one replica down is broken: %s", toJSON(t, rs))
	}
	for _, name := range []string{agent.CheckTLS, agent.CheckRegistry} {
		c, _ := checkByName(rs, name)
		if !strings.Contains(c.Warning, "127.0.0.12") || strings.Contains(c.Warning, "127.0.0.11") || !strings.Contains(c.Detail, "2 of 3 replicas") {
			t.Errorf("%s with 127.0.0.12 down: detail %q, warning %q", name, c.Detail, c.Warning)
		}
	}

	// The replica set changes: a re-join (credential still valid, token
	// not spent) rewrites the lines.
	e.dev.SetReplicas([]string{"127.0.0.11", "127.0.0.13"})
	again := e.mustJoin(token)
	if !again.AlreadyJoined || e.dev.JoinHits() != 1 {
		t.Errorf("re-join: already %v, join hits %d; want the token not spent", again.AlreadyJoined, e.dev.JoinHits())
	}
	hosts := e.read("etc/hosts")
	if !strings.Contains(hosts, hostsBlock("127.0.0.11", "127.0.0.13")) || strings.Contains(hosts, "127.0.0.12") {
		t.Errorf("hosts file after the replica set changed:\n%s", hosts)
	}
	if rs := status(); !rs.OK() {
		t.Errorf("status after the re-join: %s", toJSON(t, rs))
	}

	// The replica joined through goes down: leave revokes through another.
	e.dev.StopReplica("127.0.0.11")
	if rs := status(); !rs.OK() {
		t.Errorf("status with 127.0.0.11 down: %s", toJSON(t, rs))
	}
	lr := e.leave()
	if len(lr) != 1 || !lr[0].Revoked {
		t.Errorf("leave with the replica joined through down: %s\n%s", toJSON(t, lr), e.output())
	}
	for _, c := range e.dev.Clients() {
		if !c.Revoked {
			t.Errorf("client %s not revoked on the device", c.ID)
		}
	}
	e.requireSnapshot(before, "after join, re-join and leave")
}

// TestStatusEveryReplicaDown: with no replica answering the registry is
// unreachable, and the check names each address.
func TestStatusEveryReplicaDown(t *testing.T) {
	e := newEnv(t, envOptions{device: agenttest.DeviceOptions{Replicas: replicaIPs[:2]}})
	e.mustJoin(e.dev.Token(agenttest.TokenOptions{}))
	e.dev.StopReplica("127.0.0.11")
	e.dev.StopReplica("127.0.0.12")
	rs, err := e.sys.Status(context.Background())
	if err != nil || len(rs) != 1 {
		t.Fatalf("status = %v, %v", rs, err)
	}
	for _, name := range []string{agent.CheckTLS, agent.CheckRegistry} {
		c, _ := checkByName(rs[0], name)
		if c.OK || !strings.Contains(c.Detail, "no replica answers") || !strings.Contains(c.Detail, "127.0.0.11:") || !strings.Contains(c.Detail, "127.0.0.12:") {
			t.Errorf("%s with every replica down: %+v", name, c)
		}
	}
}

// TestJoinSingleAddressUnchanged: a device without replicas gives a state
// and hosts block exactly as before issue 12 (no addrs, one line).
func TestJoinSingleAddressUnchanged(t *testing.T) {
	e := newEnv(t, envOptions{})
	res := e.mustJoin(e.dev.Token(agenttest.TokenOptions{}))
	if res.Addrs != nil {
		t.Errorf("addrs = %v, want none", res.Addrs)
	}
	if hosts := e.read("etc/hosts"); !strings.Contains(hosts, hostsBlock("127.0.0.1")) {
		t.Errorf("hosts file:\n%s", hosts)
	}
	if st := e.read("var/lib/edgecr/state.json"); strings.Contains(st, `"addrs"`) || strings.Contains(st, `"ips"`) {
		t.Errorf("state of a single-address join records addresses lists:\n%s", st)
	}
}

// TestGoDialerTriesEachAddress: what the hosts lines are for. Go clients
// (Docker, containerd, crane) resolve the registry host to every address
// it has and a net.Dialer tries them one after another: with the first
// refusing, the connection goes to the second. The name resolves through
// Go's own resolver, answered in-process (Resolver.Dial) with the two
// addresses in order, as a hosts file with two lines answers them; no
// packet leaves the process but the TCP connections to loopback.
func TestGoDialerTriesEachAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.22:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// Nothing listens on 127.0.0.21 at that port: it refuses.
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.21", port), time.Second); err == nil {
		c.Close()
		t.Fatal("something listens on 127.0.0.21 at the test's port")
	}
	answers := []netip.Addr{netip.MustParseAddr("127.0.0.21"), netip.MustParseAddr("127.0.0.22")}
	var tried []string // every address the dialer tries, in order
	d := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		tried = append(tried, address)
		return nil
	}, Resolver: &net.Resolver{
		PreferGo: true,
		Dial: func(context.Context, string, string) (net.Conn, error) {
			client, server := net.Pipe()
			go serveDNS(server, answers)
			return client, nil
		},
	}}
	conn, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort("ecr.replicas.test.", port))
	if err != nil {
		t.Fatalf("dialing a name with two addresses, the first refusing: %v", err)
	}
	defer conn.Close()
	if got := conn.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.22" {
		t.Errorf("connected to %s, want 127.0.0.22", got)
	}
	if want := []string{net.JoinHostPort("127.0.0.21", port), net.JoinHostPort("127.0.0.22", port)}; !slices.Equal(tried, want) {
		t.Errorf("the dialer tried %v, want %v (the first refusing, then the second)", tried, want)
	}
}

// serveDNS answers DNS queries on a stream connection (2-byte length
// framing): A queries with addrs, in order, anything else with no record.
func serveDNS(c net.Conn, addrs []netip.Addr) {
	defer c.Close()
	for {
		var n [2]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return
		}
		msg := make([]byte, int(n[0])<<8|int(n[1]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(msg)
		if err != nil {
			return
		}
		q, err := p.Question()
		if err != nil {
			return
		}
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionAvailable: true})
		b.EnableCompression()
		b.StartQuestions()
		b.Question(q)
		b.StartAnswers()
		if q.Type == dnsmessage.TypeA {
			for _, a := range addrs {
				b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: a.As4()})
			}
		}
		out, err := b.Finish()
		if err != nil {
			return
		}
		if _, err := c.Write(append([]byte{byte(len(out) >> 8), byte(len(out))}, out...)); err != nil {
			return
		}
	}
}
