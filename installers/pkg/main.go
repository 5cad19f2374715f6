// Command pkg builds the .deb and .rpm packages of edgecr: edgecrd (the
// device: binary, systemd unit, its own user, /var/lib/edgecrd, and the
// agent binaries it serves to install.sh/install.ps1) and edgecr (the
// client: edgecr and docker-credential-edgecr), with nfpm.
//
//	go run ./installers/pkg -version 0.1.0 -out dist
//
// cross-builds the binaries for every platform into dist/bin (or takes
// them from -bin-dir) and writes dist/<name>_<version>_<arch>.deb/.rpm.
package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/goreleaser/nfpm/v2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pkg:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("pkg", flag.ContinueOnError)
	version := fl.String("version", "0.0.0-dev", "package version")
	out := fl.String("out", "dist", "output dir")
	binDir := fl.String("bin-dir", "", "take <binary>-<os>-<arch>[.exe] from here instead of building them")
	archs := fl.String("arch", "amd64,arm64", "package architectures")
	formats := fl.String("formats", "deb,rpm", "package formats")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if *binDir == "" {
		*binDir = filepath.Join(*out, "bin")
		if err := buildBinaries(ctx, *binDir, *version); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp("", "edgecr-pkg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	sub, _ := fs.Sub(scripts, "scripts")
	if err := os.CopyFS(filepath.Join(tmp, "scripts"), sub); err != nil {
		return fmt.Errorf("writing package scripts: %w", err)
	}
	u, err := unit(defaultUnit)
	if err != nil {
		return err
	}
	unitFile := filepath.Join(tmp, "edgecrd.service")
	if err := os.WriteFile(unitFile, u, 0o644); err != nil {
		return err
	}
	for _, arch := range strings.Split(*archs, ",") {
		o := pkgOptions{Version: *version, Arch: arch, BinDir: *binDir, Scripts: filepath.Join(tmp, "scripts"), Unit: unitFile}
		for _, format := range strings.Split(*formats, ",") {
			for _, i := range []*nfpm.Info{devicePackage(o), clientPackage(o)} {
				name := filepath.Join(*out, fmt.Sprintf("%s_%s_%s.%s", i.Name, *version, arch, format))
				if err := writePackage(i, format, name); err != nil {
					return err
				}
				fmt.Println(name)
			}
		}
	}
	return nil
}

func writePackage(i *nfpm.Info, format, name string) error {
	f, err := os.Create(name + ".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(name + ".tmp")
	if err := build(i, format, f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(name+".tmp", name)
}

// buildBinaries cross-builds the three binaries for every platform.
func buildBinaries(ctx context.Context, dir, version string) error {
	for _, p := range agentPlatforms {
		goos, goarch, _ := strings.Cut(p, "-")
		exe := ""
		if goos == "windows" {
			exe = ".exe"
		}
		for _, b := range []string{"edgecrd", "edgecr", "docker-credential-edgecr"} {
			if b == "edgecrd" && goos != "linux" {
				continue
			}
			cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(dir, b+"-"+p+exe), "./cmd/"+b)
			cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("building %s for %s: %w", b, p, err)
			}
		}
	}
	return nil
}
