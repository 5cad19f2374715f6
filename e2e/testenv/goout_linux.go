package testenv

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// goCommandOutput opens the standard output of the go command that runs
// this test binary: in package-list mode (`go test ./...`) the go command
// shows a passing package's own output only with -v, but what is written
// to its standard output shows. It is used only when the parent is the go
// command, not under -json (test2json: a line there would break the
// stream), and when a write cannot land in the middle of the go command's
// own: a terminal, a pipe or socket, or a file opened for appending (a file
// opened with > has an offset of the go command's that the write would not
// move).
func goCommandOutput() (io.WriteCloser, bool) {
	if slices.Contains(os.Args, "-test.v=test2json") {
		return nil, false
	}
	ppid := strconv.Itoa(os.Getppid())
	comm, err := os.ReadFile("/proc/" + ppid + "/comm")
	if err != nil || strings.TrimSpace(string(comm)) != "go" {
		return nil, false
	}
	cmdline, err := os.ReadFile("/proc/" + ppid + "/cmdline")
	if err != nil || slices.Contains(strings.Split(string(cmdline), "\x00"), "-json") {
		return nil, false
	}
	path := "/proc/" + ppid + "/fd/1"
	fi, err := os.Stat(path)
	if err != nil {
		return nil, false
	}
	flag := os.O_WRONLY
	switch m := fi.Mode(); {
	case m&(os.ModeCharDevice|os.ModeNamedPipe|os.ModeSocket) != 0:
	case m.IsRegular() && appending("/proc/"+ppid+"/fdinfo/1"):
		flag |= os.O_APPEND
	default:
		return nil, false
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, false
	}
	return f, true
}

// appending reports whether the fdinfo file says the descriptor was
// opened with O_APPEND.
func appending(fdinfo string) bool {
	b, err := os.ReadFile(fdinfo)
	return err == nil && appendFlag(b)
}

// appendFlag parses /proc/PID/fdinfo/FD content: its "flags:" line, in
// octal, has O_APPEND set.
func appendFlag(fdinfo []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(fdinfo))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "flags:"); ok {
			flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
			return err == nil && flags&uint64(os.O_APPEND) != 0
		}
	}
	return false
}
