package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/edgecr/edgecr/agent"
	"github.com/edgecr/edgecr/internal/textsafe"
	"github.com/spf13/cobra"
)

// imageFlags are the flags ls, rm and cp share.
type imageFlags struct {
	Root          string
	Output        string
	Username      string
	PasswordStdin bool
}

func (fl *imageFlags) add(cmd *cobra.Command, forWhat string) {
	cmd.Flags().StringVar(&fl.Root, "root", "", "system root the join was made under")
	cmd.Flags().StringVarP(&fl.Output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVarP(&fl.Username, "username", "u", "", "use the credential of `USER` "+forWhat+" instead of the one join stored (e.g. admin: edgecrd info on the device shows its password)")
	cmd.Flags().BoolVar(&fl.PasswordStdin, "password-stdin", false, "read the password of --username from standard input")
}

// check checks the shared flags together.
func (fl *imageFlags) check() error {
	if err := checkOutput(fl.Output); err != nil {
		return err
	}
	if fl.Username != "" && !fl.PasswordStdin {
		return usageError("--username needs --password-stdin (the password is never a flag: it would show in ps and shell history)")
	}
	if fl.PasswordStdin && fl.Username == "" {
		return usageError("--password-stdin needs --username")
	}
	return nil
}

// images reads the password (with --password-stdin) and opens the image
// commands' view of the joined registries.
func (fl *imageFlags) images(f *Factory, g *globalFlags) (*agent.Images, error) {
	var password string
	if fl.PasswordStdin {
		line, err := bufio.NewReader(f.IO.In).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading the password from stdin: %w", err)
		}
		password = strings.TrimRight(line, "\r\n")
		if password == "" {
			return nil, usageError("--password-stdin: standard input holds no password")
		}
	}
	sys, err := f.System(fl.Root, g.logger(f))
	if err != nil {
		return nil, err
	}
	return sys.Images(agent.ImagesOptions{Username: fl.Username, Password: agent.Secret(password)})
}

// hinted is an error with the remediation the user can act on, printed
// on the lines after it (see run).
type hinted struct {
	err  error
	hint string
}

func (h *hinted) Error() string { return h.err.Error() + "\n" + h.hint }
func (h *hinted) Unwrap() error { return h.err }

func withHint(err error, hint string) error {
	if err == nil || hint == "" {
		return err
	}
	return &hinted{err: err, hint: hint}
}

const adminPasswordHint = "(the admin password: `edgecrd info` on the device)"

// hint is imageHint, knowing whether --username replaced the stored
// credential: then a 401 means a wrong password, not a revoked client.
func (fl *imageFlags) hint(err error, denied string) error {
	if fl.Username != "" && errors.Is(err, agent.ErrUnauthorized) {
		return withHint(err, wrongPasswordHint(fl.Username))
	}
	return imageHint(err, denied)
}

// wrongPasswordHint is the remediation for a password --username's user
// does not have.
func wrongPasswordHint(user string) string {
	if user == "admin" {
		return "The password given for admin is wrong: `edgecrd info` on the device shows the admin password (Password column)."
	}
	return "The password given for " + user + " is wrong (for the device's admin: `edgecrd info` on the device shows it)."
}

// imageHint is the remediation for the image commands' errors with the
// stored credential; denied is the hint for ErrDenied, which depends on
// the command.
func imageHint(err error, denied string) error {
	var ne net.Error
	var ve *tls.CertificateVerificationError
	switch {
	case errors.Is(err, agent.ErrDenied):
		return withHint(err, denied)
	case errors.Is(err, agent.ErrUnauthorized):
		return withHint(err, "Check this client with `edgecr status`: a client revoked on the device joins again with a new token.")
	case errors.Is(err, syscall.ECONNREFUSED):
		return withHint(err, refusedHint(err))
	case errors.As(err, &ne), errors.As(err, &ve):
		return withHint(err, "Check the connection to the device with `edgecr status`.")
	}
	return err
}

// isTerminal reports whether a stream is a terminal.
func isTerminal(v any) bool {
	if w, ok := v.(io.Writer); ok {
		v = textsafe.Raw(w)
	}
	f, ok := v.(interface{ Fd() uintptr })
	return ok && isTerminalFd(f.Fd())
}

// mediaTypeName is a media type as a person reads it.
func mediaTypeName(mt string) string {
	switch mt {
	case "application/vnd.docker.distribution.manifest.v2+json":
		return "Docker v2"
	case "application/vnd.docker.distribution.manifest.list.v2+json":
		return "Docker list"
	case "application/vnd.oci.image.manifest.v1+json":
		return "OCI manifest"
	case "application/vnd.oci.image.index.v1+json":
		return "OCI index"
	case "application/vnd.docker.distribution.manifest.v1+json", "application/vnd.docker.distribution.manifest.v1+prettyjws":
		return "Docker v1"
	}
	return mt
}

// humanBytes is n in IEC units: 512 B, 1.5 KiB, 12.6 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// refusedHint is the remediation for a connection refused: nothing listens
// at that address and port.
func refusedHint(err error) string {
	where := "that address and port"
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Addr != nil {
		where = oe.Addr.String()
	}
	return "Nothing listens at " + where + ": check the host and port (the device's `edgecrd info` prints its endpoint and\n" +
		"port, 31001 by default) and that `edgecrd serve` runs there."
}
