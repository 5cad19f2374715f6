// Package benchutil holds what the benchmark commands e2e/bench,
// e2e/agentbench and e2e/cpbench, and the soak e2e/soak, share: the
// signal-aware main, the command line a report names, the description of
// the machine a report was measured on, the markers of a command's
// generated block in a markdown file (docs/benchmarks.md) and the atomic
// rewrite of that block, and small helpers for starting edgecrd (a free
// loopback port, the tail of its log, the check of its CA against its pin).
// Its package s3bucket is the bucket on MinIO that -storage s3 runs
// edgecrd on.
package benchutil
