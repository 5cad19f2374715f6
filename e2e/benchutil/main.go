package benchutil

import (
	"context"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// Main runs a benchmark command: run gets a context cancelled on SIGINT or
// SIGTERM, the arguments after the program name, stdout and stderr, and
// returns the exit status.
func Main(run func(ctx context.Context, args []string, stdout, stderr io.Writer) int) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// CommandLine is how a report names the command that produced it:
// go run ./e2e/NAME with args, quoted where a shell would need it.
func CommandLine(name string, args []string) string {
	q := make([]string, 0, len(args)+3)
	q = append(q, "go", "run", "./e2e/"+name)
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$`\\") {
			a = strconv.Quote(a)
		}
		q = append(q, a)
	}
	return strings.Join(q, " ")
}
