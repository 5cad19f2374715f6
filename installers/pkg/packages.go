package main

import (
	"embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"

	_ "github.com/goreleaser/nfpm/v2/deb" // registers the packagers
	_ "github.com/goreleaser/nfpm/v2/rpm"
)

//go:embed scripts
var scripts embed.FS

// The platforms install.sh and install.ps1 can ask the device for.
var agentPlatforms = []string{"linux-amd64", "linux-arm64", "darwin-amd64", "darwin-arm64", "windows-amd64", "windows-arm64"}

// pkgOptions say which package to describe.
type pkgOptions struct {
	Version string
	Arch    string // amd64, arm64
	BinDir  string // holds <binary>-<os>-<arch>[.exe] for every binary
	Scripts string // a dir holding the scripts/ files
	Unit    string // the rendered unit file
}

const (
	maintainer = "edgecr <edgecr@users.noreply.github.com>"
	homepage   = "https://github.com/edgecr/edgecr"
	license    = "Apache-2.0"
)

func file(src, dst string, mode os.FileMode) *files.Content {
	return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode, Owner: "root", Group: "root"}}
}

// devicePackage is edgecrd with its unit and the agent binaries it serves
// to install.sh/install.ps1 (those present in BinDir).
func devicePackage(o pkgOptions) *nfpm.Info {
	c := files.Contents{
		file(filepath.Join(o.BinDir, "edgecrd-linux-"+o.Arch), "/usr/bin/edgecrd", 0o755),
		file(o.Unit, "/usr/lib/systemd/system/edgecrd.service", 0o644),
		{Destination: defaultUnit.DistDir, Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: 0o755, Owner: "root", Group: "root"}},
	}
	for _, p := range agentPlatforms {
		exe := ""
		if p[:len("windows")] == "windows" {
			exe = ".exe"
		}
		for _, b := range []string{"edgecr", "docker-credential-edgecr"} {
			name := b + "-" + p + exe
			if _, err := os.Stat(filepath.Join(o.BinDir, name)); err == nil {
				c = append(c, file(filepath.Join(o.BinDir, name), defaultUnit.DistDir+"/"+name, 0o644))
			}
		}
	}
	return info(o, "edgecrd", "edgecr device registry: an OCI registry for edge devices, its CA and join tokens", c, nfpm.Scripts{
		PreInstall:  filepath.Join(o.Scripts, "edgecrd-preinstall.sh"),
		PostInstall: filepath.Join(o.Scripts, "edgecrd-postinstall.sh"),
		PreRemove:   filepath.Join(o.Scripts, "edgecrd-preremove.sh"),
		PostRemove:  filepath.Join(o.Scripts, "edgecrd-postremove.sh"),
	})
}

// clientPackage is the agent: edgecr and the Docker credential helper.
func clientPackage(o pkgOptions) *nfpm.Info {
	return info(o, "edgecr", "edgecr agent: join a machine to an edgecrd registry (hosts, trust store, Docker credentials)", files.Contents{
		file(filepath.Join(o.BinDir, "edgecr-linux-"+o.Arch), "/usr/bin/edgecr", 0o755),
		file(filepath.Join(o.BinDir, "docker-credential-edgecr-linux-"+o.Arch), "/usr/bin/docker-credential-edgecr", 0o755),
	}, nfpm.Scripts{})
}

func info(o pkgOptions, name, desc string, c files.Contents, s nfpm.Scripts) *nfpm.Info {
	i := &nfpm.Info{
		Name: name, Arch: o.Arch, Platform: "linux", Version: o.Version,
		Maintainer: maintainer, Description: desc, Homepage: homepage, License: license,
		Section: "admin", Priority: "optional",
		MTime:        time.Unix(0, 0).UTC(),
		Overridables: nfpm.Overridables{Contents: c, Scripts: s},
	}
	return nfpm.WithDefaults(i)
}

// build writes info as a format ("deb", "rpm") package to w.
func build(i *nfpm.Info, format string, w io.Writer) error {
	p, err := nfpm.Get(format)
	if err != nil {
		return err
	}
	ic := *i
	ic.Contents = slices.Clone(i.Contents)
	if err := nfpm.PrepareForPackager(&ic, format); err != nil {
		return fmt.Errorf("preparing %s %s: %w", ic.Name, format, err)
	}
	if err := p.Package(&ic, w); err != nil {
		return fmt.Errorf("building %s %s: %w", ic.Name, format, err)
	}
	return nil
}
