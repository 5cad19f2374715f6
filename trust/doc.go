// Package trust installs a device's CA certificate into the places a client
// machine consults when it talks TLS to the device's registry, and removes it
// again so that, after `edgecr leave`, the machine is as it was before
// `edgecr join`.
//
// Two concerns live here, each as a pure planner plus a thin I/O layer:
//
//   - The OS trust store, behind [Store]: Debian/Ubuntu and Alpine
//     (update-ca-certificates), RHEL/Fedora (update-ca-trust), Arch
//     (trust extract-compat), macOS (security) and Windows (crypt32,
//     LocalMachine Root). [DetectKind] picks the flavour from
//     /etc/os-release of a root directory, never from this process's
//     environment in init(); [PlanStore] describes what a store will do
//     (for --dry-run); [NewStore] builds one around an injected [Runner].
//   - Container runtimes: [DetectRuntimes] finds Docker, containerd,
//     podman/CRI-O and k3s under a root, [PlanRuntimes] computes the files
//     to write, and [RuntimeWriter] writes them and takes them away again,
//     guided by the [RuntimeReceipt] that Install returns.
//
// Every system path is relative to a root directory passed in by the caller
// ("/" on a live system); files written into configuration (hosts.toml's ca,
// registries.yaml's ca_file) name the path as the machine will see it, not
// the path under the root. Writes are atomic (temp file, fsync, rename) and
// skipped when the content is already right.
//
// # smallstep/truststore
//
// This package does not import github.com/smallstep/truststore. Its Linux
// store is chosen in init() by the first anchor directory that exists (and
// has picked the RHEL directory on Ubuntu), every command runs through sudo
// when sudo is on PATH, WithPrefix sets a package global, Windows installs
// into the current user's Root store rather than LocalMachine, macOS
// uninstall removes the trust setting but leaves the certificate in the
// System keychain, its Java support shells out directly and retries under
// sudo, and none of it can be pointed at a root directory or a fake command
// runner. Importing it would also run that init() in every binary that links
// this package. What was worth keeping is kept as knowledge instead: the
// anchor directories and refresh commands per distribution, and deleting by a
// certificate's identity (here its SHA-1 thumbprint, which unlike the serial
// number cannot match someone else's CA).
//
// Package trusttest holds a recording fake Runner, an in-memory Store for the
// agent's tests, a CA generator, and TestStore, the contract every Store
// implementation passes.
//
// Java keystores are not touched directly: on Debian the ca-certificates-java
// hook of update-ca-certificates follows the system store, which is why
// removal runs update-ca-certificates --fresh.
package trust
