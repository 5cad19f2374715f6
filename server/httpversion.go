package server

import "net/http"

// registryProtocols are the HTTP versions the registry listener offers in
// TLS's ALPN: HTTP/1.1 only. Measured side by side (docs/benchmarks.md,
// go run ./e2e/bench -compare), a blob pull over HTTP/2 costs edgecrd about
// twice the CPU per GiB of the same pull over HTTP/1.1 and is slower: Go's
// HTTP/2 server writes a response in 16 KiB DATA frames (Go clients do not
// raise SETTINGS_MAX_FRAME_SIZE), each handed from the handler to the
// connection's writer goroutine, its own TLS record and write(2). A push
// costs the same either way. Clients lose nothing they use: docker,
// containerd, podman and crane speak HTTP/1.1 to a registry that offers
// only that, and open a connection per parallel layer instead of
// multiplexing one (MaxConnsPerAddr leaves room for that). The web UI's
// listener keeps Go's default (HTTP/2 and HTTP/1.1).
func registryProtocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	return &p
}
