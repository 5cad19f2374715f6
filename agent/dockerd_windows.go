package agent

// liveDockerdSignal: Docker on Windows (Desktop) runs its Linux daemon in
// a VM, which join --mirror does not reach.
func liveDockerdSignal(string) func() (int, error) { return nil }
