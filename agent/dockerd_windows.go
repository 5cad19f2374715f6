package agent

import "context"

// liveDockerdSignal: Docker on Windows (Desktop) runs its Linux daemon in
// a VM, which join --mirror does not reach.
func liveDockerdSignal(string) func() (int, error) { return nil }

func liveDockerdMirrors(string) func(ctx context.Context) ([]string, error) { return nil }
