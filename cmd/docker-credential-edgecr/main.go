// Command docker-credential-edgecr is the Docker credential helper for
// registries joined with `edgecr join`: it serves get, store, erase, list
// and version from the file that `edgecr join` writes (see
// credhelper.DefaultPath; EDGECR_CONFIG_DIR relocates it).
package main

import (
	"os"
	"runtime"

	"github.com/docker/docker-credential-helpers/credentials"
	"github.com/edgecr/edgecr/credhelper"
)

func main() {
	credentials.Name = "docker-credential-edgecr"
	credentials.Package = "github.com/edgecr/edgecr"
	credentials.Version = buildVersion()
	home, _ := os.UserHomeDir() // "" is handled: every operation then says to set EDGECR_CONFIG_DIR
	credentials.Serve(credhelper.NewStore(credhelper.DefaultPath(runtime.GOOS, os.Getenv, home)))
}
