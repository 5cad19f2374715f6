package credhelper

import "path/filepath"

// DockerConfigFileName is the name of Docker's client config in its dir.
const DockerConfigFileName = "config.json"

// DockerConfigDir returns the directory of Docker's client config, as the
// Docker CLI resolves it: $DOCKER_CONFIG when set, else ~/.docker. Like the
// CLI it does not depend on the OS. env is os.Getenv or a fake.
func DockerConfigDir(env func(string) string, home string) string {
	if dir := env("DOCKER_CONFIG"); dir != "" {
		return dir
	}
	return filepath.Join(home, ".docker")
}
