package e2e

// sudoUnlessRoot is server.SudoUnlessRoot, the prefix of the printed join
// line (e2e drives the binaries and does not import server).
const sudoUnlessRoot = `$([ "$(id -u)" = 0 ] || echo sudo)`
