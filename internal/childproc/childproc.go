// Package childproc holds the one child process at a time of a harness
// that SIGKILLs and starts it again (fault injection) while other
// goroutines read its pid: edgecrd in the soak, MinIO under the S3 tests,
// the soak and the benchmarks.
package childproc

import (
	"os/exec"
	"sync"
)

// Proc is the harness's child process; the zero Proc has none running.
type Proc struct {
	mu     sync.Mutex
	cmd    *exec.Cmd // nil when none runs
	exited chan struct{}
}

// Start starts cmd as the child (after Kill, if one ran) and returns a
// channel closed once it has exited and been reaped.
func (p *Proc) Start(cmd *exec.Cmd) (<-chan struct{}, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	return exited, nil
}

// Kill ends the child with SIGKILL (no shutdown of any kind) and reaps it;
// with none running it does nothing.
func (p *Proc) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.cmd = nil
}

// Pid is the running child's process id, 0 when none runs.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}
