package main

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/edgecr/edgecr/server"
	"github.com/spf13/cobra"
)

// initFlags are the flags init and serve share.
type initFlags struct {
	name, domain, listen string
	ips                  []string
}

func (f *initFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "device name (default: the host name)")
	fl.StringVar(&f.domain, "domain", server.DefaultDomain, "DNS domain of the registry host ecr.<name>.<domain>")
	fl.StringSliceVar(&f.ips, "ip", nil, "IP address clients reach the device at (repeatable; default: every non-loopback address); for serve --storage, this replica's own")
	fl.StringVar(&f.listen, "listen", fmt.Sprintf(":%d", server.DefaultPort), "registry listen address")
}

// options turns the flags the user actually gave into server.InitOptions.
func (f *initFlags) options(cmd *cobra.Command) (server.InitOptions, error) {
	o := server.InitOptions{
		DefaultName: os.Hostname,
		DefaultIPs:  server.DetectIPs,
	}
	fl := cmd.Flags()
	if fl.Changed("name") {
		o.Name = &f.name
	}
	if fl.Changed("domain") {
		o.Domain = &f.domain
	}
	for _, s := range f.ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return o, fmt.Errorf("invalid --ip %q: not an IP address", s)
		}
		o.IPs = append(o.IPs, ip)
	}
	_, portStr, err := net.SplitHostPort(f.listen)
	if err != nil {
		return o, fmt.Errorf("invalid --listen %q: %w", f.listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return o, fmt.Errorf("invalid --listen %q: bad port", f.listen)
	}
	if fl.Changed("listen") {
		o.Port = &port
	}
	return o, nil
}
