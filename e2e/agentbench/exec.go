package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// commandTimeout bounds one command; the slowest (join, leave) take about
// a second.
const commandTimeout = 2 * time.Minute

// stampedLine is a line of a command's standard output and when it arrived,
// counted from just before the process was started.
type stampedLine struct {
	at   time.Duration
	text string
}

// execResult is one timed run of a command.
type execResult struct {
	wall   time.Duration // from just before exec to the reaped exit
	output []byte        // stdout and stderr (with stamp: stderr only)
	lines  []stampedLine // stdout line by line, with stamp
}

// timedExec runs argv with env and measures its wall time: from just before
// the fork to the return of wait. Standard input (stdin, may be nil) and
// output are files, so that no copying goroutine of this process runs
// during the measurement; with stamp, standard output is a pipe read line by
// line and each line is timestamped as it arrives (join prints each step's
// events as it completes them). A non-zero exit is an error carrying the
// output.
func timedExec(ctx context.Context, scratch string, env []string, stdin []byte, stamp bool, argv ...string) (execResult, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	ownGroup(cmd)

	if stdin != nil {
		in, err := scratchFile(scratch, "stdin-*", stdin)
		if err != nil {
			return execResult{}, err
		}
		defer closeRemove(in)
		cmd.Stdin = in
	}
	out, err := scratchFile(scratch, "out-*", nil)
	if err != nil {
		return execResult{}, err
	}
	defer closeRemove(out)
	cmd.Stdout, cmd.Stderr = out, out

	var pr, pw *os.File
	var lines []stampedLine
	done := make(chan error, 1)
	if stamp {
		if pr, pw, err = os.Pipe(); err != nil {
			return execResult{}, fmt.Errorf("creating a pipe: %w", err)
		}
		defer pr.Close()
		cmd.Stdout = pw
	}

	start := time.Now()
	if stamp {
		go func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				lines = append(lines, stampedLine{at: time.Since(start), text: sc.Text()})
			}
			done <- sc.Err()
		}()
	}
	err = cmd.Start()
	if pw != nil {
		pw.Close() // the child holds the write end now; EOF comes with its exit
	}
	if err == nil {
		err = cmd.Wait()
	}
	wall := time.Since(start)
	if stamp {
		if rerr := <-done; rerr != nil && err == nil {
			err = fmt.Errorf("reading the output of %s: %w", filepath.Base(argv[0]), rerr)
		}
	}
	if _, serr := out.Seek(0, io.SeekStart); serr != nil {
		return execResult{}, serr
	}
	output, rerr := io.ReadAll(out)
	if rerr != nil {
		return execResult{}, rerr
	}
	r := execResult{wall: wall, output: output, lines: lines}
	if err != nil {
		var all strings.Builder
		for _, l := range lines {
			all.WriteString(l.text + "\n")
		}
		all.Write(output)
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		return r, fmt.Errorf("%s: %w\n%s", displayArgv(argv), err, strings.TrimSpace(all.String()))
	}
	return r, nil
}

func scratchFile(dir, pattern string, content []byte) (*os.File, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, fmt.Errorf("creating a scratch file: %w", err)
	}
	if content != nil {
		if _, err := f.Write(content); err != nil {
			closeRemove(f)
			return nil, fmt.Errorf("writing a scratch file: %w", err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			closeRemove(f)
			return nil, fmt.Errorf("writing a scratch file: %w", err)
		}
	}
	return f, nil
}

func closeRemove(f *os.File) {
	f.Close()
	os.Remove(f.Name())
}

// displayArgv is argv for messages, with the binary's directory and a join
// token's secret left out.
func displayArgv(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		switch {
		case i == 0:
			a = filepath.Base(a)
		case i > 0 && argv[i-1] == "--token":
			if j := strings.LastIndexByte(a, '.'); j >= 0 {
				a = a[:j+1] + "<secret>"
			}
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
