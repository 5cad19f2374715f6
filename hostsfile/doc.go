// Package hostsfile manages the hosts file entry that maps an edgecr
// registry host name to its device's IP address, on Linux, macOS and Windows.
//
// # The block
//
// The agent owns one marked block per registry host:
//
//	# BEGIN edgecr ecr.device.lan
//	192.0.2.10 ecr.device.lan
//	# END edgecr ecr.device.lan
//
// A device with several replicas (issue 12) gets one address line per
// replica in its block ([AddAll]); clients try them in turn.
//
// Everything from a BEGIN marker to its END marker (both included) belongs to
// edgecr; every other line belongs to the user and is never changed. Blocks of
// different hosts may follow one another, so several devices can be joined.
//
// The pure functions [Add], [Remove] and [Lookup] transform or query the
// content of a hosts file as bytes and guarantee:
//
//   - Lines outside the host's block keep their bytes exactly: whitespace,
//     tabs, comments, trailing spaces and line endings.
//   - New lines use the file's dominant line ending (CRLF stays CRLF, LF stays LF).
//   - Whether the file ends with a line terminator is kept, so that Add
//     followed by Remove returns the original bytes even when the file did
//     not end with a newline. When the last line has no terminator, the
//     terminator Add puts after it belongs to the block and Remove takes it
//     away. (The one exception: when Remove leaves an empty line last, that
//     line keeps its terminator, since without it there would be no line.)
//   - Add is idempotent, replaces the block of a host that is already there,
//     and refuses with [ErrHostOwnedByUser] when a line the user wrote already
//     maps the host name: edgecr never takes over or deletes a user's line.
//   - Remove of a host that has no block returns the input unchanged.
//
// [File] applies the same transforms to a file on disk: read, transform and
// write all happen under an exclusive lock on a lock file next to the hosts
// file, the write is skipped when nothing changed, and it is atomic (temporary
// file in the same directory, fsync, rename) with the original file's mode,
// owner and SELinux label. Where the hosts file cannot be replaced by rename
// (it is a bind mount inside a container), it is rewritten in place under the
// same lock; see [File.Add].
//
// # txeh
//
// github.com/txn2/txeh parses the address lines for [Lookup] and for the
// check that refuses to take over a user's line: its parser cuts lines the
// same way this package does, so its line numbers are ours (checked on each
// call), and its rules (a '#' starts a comment anywhere, names are
// case-insensitive) are those of hosts(5). Its writing side is not used: it
// writes in place without a lock or fsync, turns CRLF into LF, re-spaces
// every address line when it renders a file, ignores an invalid IP, and moves
// a name out of a user's line into its own. TestTxehPitfallsNotInherited
// shows each of these next to this package's behaviour; the fuzz tests also
// use txeh as an independent reader of what Add writes.
package hostsfile
