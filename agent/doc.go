// Package agent is the client side of edgecr: `edgecr join`, `status` and
// `leave`. It talks only to small interfaces (System's fields: hosts file,
// trust store, runtimes, credential store, Docker config, credential helper,
// resolver, state, clock); NewSystem wires the real ones from hostsfile,
// trust and credhelper, and tests swap in temp directories and fakes.
//
// # Join
//
// Join runs five steps, in order, each idempotent, each reported as an
// Event as it happens ("✓ hosts: added 198.18.0.2 ecr.box.internal to
// /etc/hosts"), with the state saved after each:
//
//  1. bootstrap: a TLS connection to the join URL that completes only if the
//     chain the device presents holds the certificate the token pins
//     (SHA-256 of its DER) and the leaf verifies against it; the host name is
//     not checked, the pin is the trust anchor (k3s, kubeadm). Only then
//     GET /edgecr/v1/ca (checked against the pin) and POST /edgecr/v1/join
//     with the token; the CA in the answer is checked against the pin too.
//  2. hosts: "<ip> <registry host>" in edgecr's block of the hosts file; the
//     IP is the URL's host when it is an IP, else the first the device
//     advertises. A line of the user's that maps the name is never taken
//     over: join refuses and names the line.
//  3. trust: the CA into the OS trust store (as "<host>_<port>") and into
//     every container runtime present (Docker certs.d, containerd
//     hosts.toml, containers certs.d, k3s registries.yaml); restart notices
//     for Docker Desktop and k3s when their files changed. With --browsers
//     (Linux), also into the user's browsers' NSS databases with certutil,
//     run as the user under sudo (see BrowsersRecord); a problem there is
//     a warning, not a failed join.
//  4. credentials: the credential into docker-credential-edgecr's store
//     (0600; under sudo owned by $SUDO_USER), and credHelpers["host:port"] =
//     "edgecr" in the user's Docker config.json. Under sudo both must lie in
//     the user's home, reached through nothing owned by another user and no
//     symbolic link out of the home (credhelper.WithOwner): join refuses
//     otherwise, before it spends the token.
//  5. verify: the name resolves to the IP (under --root: through the root's
//     hosts file), TLS to host:port verifies with the system roots (under
//     --root: the bundle the trust step refreshed), the helper found on PATH
//     returns the credential, and GET /v2/ accepts it.
//
// With --mirror REGISTRY (repeatable), join then makes the device's mirror
// port the runtimes' mirror of each registry (mirror.go): Docker's
// daemon.json registry-mirrors (docker.io only; dockerd reloaded with
// SIGHUP), containerd's certs.d/<registry>/hosts.toml, k3s's
// registries.yaml and a podman registries.conf.d drop-in. Each file is
// recorded in Entry.Mirror, with a 0600 copy of its bytes from before in
// mirror-backups beside the state, before it is written.
//
// A failure undoes, in reverse, what the registry's entry records and
// revokes the new client on the device, unless the entry was a completed
// join before this run (a re-join re-converging): that join stays. A join
// whose device still accepts the stored credential does not spend the token:
// it says "already joined as <client>" and re-converges the other steps.
// Before the token is spent, join refuses what would fail later anyway: a
// Docker config.json that does not parse (step 4), a line of the user's in
// the hosts file for the registry host the device certificate names, or
// edgecr markers there that do not pair up (step 2), and under sudo a
// credentials file or config.json root may not write for the user (step 4).
//
// # State
//
// The state lives at StatePath: <root>/var/lib/edgecr/state.json on unix,
// %ProgramData%\edgecr\state.json on Windows; mode 0644 in a 0755
// directory, since it holds no secret and `edgecr status` reads it
// unprivileged; written atomically after every step (and before each change
// whose undo needs a record), under a lock file (state.json.lock) held by
// join and leave. One entry per registry host:port:
//
//	{
//	  "version": 1,
//	  "createdDirs": ["/r/var/lib/edgecr"],
//	  "registries": [{
//	    "registry": "ecr.box.internal:31001",
//	    "host": "ecr.box.internal", "port": 31001, "ip": "198.18.0.2",
//	    "deviceURL": "https://198.18.0.2:31001",
//	    "pin": "<sha256 hex of the CA DER>", "caPEM": "-----BEGIN CERTIFICATE-----…",
//	    "clientID": "c-0123abcd4567ef89", "username": "c-0123abcd4567ef89",
//	    "role": "push", "name": "laptop",
//	    "joinedAt": "…", "updatedAt": "…",
//	    "steps": ["bootstrap", "hosts", "trust", "credentials", "verify"],
//	    "hosts": {"path": "/etc/hosts", "host": "ecr.box.internal", "ip": "198.18.0.2", "added": true},
//	    "trust": {"kind": "debian", "name": "ecr.box.internal_31001", "installed": true},
//	    "runtimes": <trust.RuntimeReceipt>,
//	    "credential": {"path": "/home/alice/.config/edgecr/credentials.json",
//	                   "key": "ecr.box.internal:31001", "fileExisted": false,
//	                   "createdDirs": ["/home/alice/.config/edgecr"]},
//	    "dockerConfig": {"path": "/home/alice/.docker/config.json", "change": <credhelper.Change>},
//	    "browsers": {"name": "ecr.box.internal_31001", "added": ["/home/alice/.pki/nssdb"]},
//	    "mirror": {"registries": ["docker.io"], "url": "https://ecr.box.internal:31002",
//	               "files": [{"path": "/etc/docker/daemon.json", "kind": "docker-daemon", "registry": "docker.io",
//	                          "existed": true, "backup": "/var/lib/edgecr/mirror-backups/<sha256 of the path>",
//	                          "beforeSHA256": "…", "mode": 420, "wrote": "<sha256 of what join wrote>"}]}
//	  }]
//	}
//
// The client's password is kept between the bootstrap and the credentials
// step, so that a crash in between does not lose a credential whose token is
// spent, in pending-secrets.json beside the state (mode 0600, written before
// the state that needs it); the credentials step removes it. No secret is
// ever in the state itself. The Docker Change kept is the first one that
// changed config.json (a later join returns an empty one).
//
// What a write will do is recorded before the write: the Docker Change
// (computed from config.json as it is, marked "pending") and the runtime
// files with the SHA-256 of their planned content (marked "pending" in the
// receipt), with the directories about to be made. A join that dies right
// after a write thus leaves a record of it: the rerun and leave take a
// pending item as edgecr's when the file holds what was planned
// (credhelper.Applied; the hash for runtime files), and as never written
// when it does not.
//
// Leave (and a failed join's rollback) takes back exactly what the entry
// records: revoke on the device (pinned TLS with the stored CA; an
// unreachable device is a warning), then the Docker config (with the stored
// Change), the credential (and the credentials file and directories join
// created, once empty), the runtimes (with the stored receipt), the OS trust
// store and the hosts entry. Each undo is saved as it is done; one that fails
// keeps its record for the next leave. When no entry is left, the state
// file, its lock and the directories made for them are removed.
//
// # Secrets
//
// The token secret and the client password are never printed, logged or put
// in an error: Token and Secret print as <redacted>, the device's error
// messages are scrubbed of them, and JoinResult holds no password.
package agent
