package main

import (
	"fmt"
	"strings"
	"time"
)

// The phases of `edgecr join`, delimited by the progress lines it prints as
// each step completes (agent.Event: "<mark> <item>: <detail>"). A phase
// ends with the last line of its step.
const (
	phaseBootstrap = iota
	phaseHosts
	phaseTrust
	phaseRuntimes
	phaseCredentials
	phaseVerify
	phaseExit
	numPhases
)

var phaseNames = [numPhases]string{
	phaseBootstrap:   "exec → bootstrap done (start-up, state lock, pinned TLS, CA fetch, token exchange)",
	phaseHosts:       "hosts entry",
	phaseTrust:       "OS trust store (anchor file, update-ca-certificates, bundle check)",
	phaseRuntimes:    "runtimes' certs.d (docker, containerd, podman)",
	phaseCredentials: "credential store and config.json",
	phaseVerify:      "verify (resolve, TLS, helper exec, GET /v2/)",
	phaseExit:        "summary and exit",
}

// itemPhase maps an event's item to its phase; cur is the phase of the line
// before, for "docker", which is a runtime in the trust step and a notice
// in the credentials step (under sudo).
func itemPhase(item string, cur int) (int, bool) {
	switch item {
	case "bootstrap":
		return phaseBootstrap, true
	case "hosts":
		return phaseHosts, true
	case "trust store":
		return phaseTrust, true
	case "docker":
		if cur >= phaseCredentials {
			return phaseCredentials, true
		}
		return phaseRuntimes, true
	case "containerd", "containers", "k3s", "runtimes", "restart":
		return phaseRuntimes, true
	case "credential", "docker config":
		return phaseCredentials, true
	case "verify", "helper":
		return phaseVerify, true
	}
	return 0, false
}

// joinPhases splits a join's wall time into its phases from its stamped
// progress lines. It fails when a step printed no line (the output format
// changed, or the join was not a fresh one).
func joinPhases(lines []stampedLine, wall time.Duration) ([numPhases]time.Duration, error) {
	var end [numPhases]time.Duration
	var seen [numPhases]bool
	cur := phaseBootstrap
	for _, l := range lines {
		_, rest, ok := strings.Cut(l.text, " ") // the mark: ✓ - ! ↺ •
		if !ok {
			continue
		}
		item, _, ok := strings.Cut(rest, ": ")
		if !ok {
			continue
		}
		p, ok := itemPhase(item, cur)
		if !ok || p < cur {
			continue
		}
		cur, end[p], seen[p] = p, l.at, true
	}
	var d [numPhases]time.Duration
	prev := time.Duration(0)
	for p := range phaseExit {
		if !seen[p] {
			return d, fmt.Errorf("join printed no progress line for %q", phaseNames[p])
		}
		d[p] = end[p] - prev
		prev = end[p]
	}
	d[phaseExit] = wall - prev
	return d, nil
}
