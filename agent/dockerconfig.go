package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/edgecr/edgecr/credhelper"
)

// HelperName is the credHelpers value that names docker-credential-edgecr.
const HelperName = "edgecr"

// DockerConfig is the user's Docker client config.json.
type DockerConfig interface {
	// Path is the config.json that join registers the helper in.
	Path() string
	// Check fails when the config cannot be edited (it does not parse), so
	// that join refuses before spending the token.
	Check() error
	// Register makes credHelpers[hostPort] name the edgecr helper. intent
	// gets the Change before anything is written (credhelper.WithIntent);
	// an error from it stops the write.
	Register(hostPort string, intent func(credhelper.Change) error) (credhelper.Change, error)
	// Applied reports whether the config at path shows ch made
	// (credhelper.Applied): a Change recorded before a crash is then ours.
	Applied(path string, ch credhelper.Change) (bool, error)
	// Unregister undoes ch in the config at path.
	Unregister(path string, ch credhelper.Change) (bool, error)
	// Helper returns credHelpers[hostPort] of the config at path.
	Helper(path, hostPort string) (string, error)
	// Foreign lists another tool's entries for hostPort that Register
	// would replace or shadow (credhelper.Foreign).
	Foreign(hostPort string) ([]string, error)
}

// DockerConfigFile is the DockerConfig on disk, edited through credhelper.
type DockerConfigFile struct {
	File string
	// DefaultStore returns the credsStore Docker would use for a config
	// with no credentials configured (credhelper.DefaultCredsStore).
	DefaultStore func() string
	// User owns a config.json (and directories) that join creates.
	User User
}

// Path implements DockerConfig.
func (d *DockerConfigFile) Path() string { return d.File }

// Check implements DockerConfig with the parser Register uses; under sudo
// it also checks that the file is one root may write for the user
// (credhelper.CheckPath).
func (d *DockerConfigFile) Check() error {
	if err := credhelper.CheckPath(d.File, d.User.fileOptions()...); err != nil {
		return fmt.Errorf("checking Docker config %s: %w", d.File, err)
	}
	data, err := os.ReadFile(d.File)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading Docker config %s: %w", d.File, err)
	}
	if _, _, err := credhelper.Register(data, "edgecr-preflight.invalid:1", HelperName, ""); err != nil {
		return fmt.Errorf("checking Docker config %s: %w", d.File, err)
	}
	return nil
}

// Register implements DockerConfig.
func (d *DockerConfigFile) Register(hostPort string, intent func(credhelper.Change) error) (credhelper.Change, error) {
	opts := d.User.fileOptions()
	if intent != nil {
		opts = append(opts, credhelper.WithIntent(intent))
	}
	store := ""
	if d.DefaultStore != nil {
		store = d.DefaultStore()
	}
	return credhelper.RegisterFile(d.File, hostPort, HelperName, store, opts...)
}

// Unregister implements DockerConfig.
func (d *DockerConfigFile) Unregister(path string, ch credhelper.Change) (bool, error) {
	return credhelper.UnregisterFile(path, ch, d.User.fileOptions()...)
}

// Applied implements DockerConfig.
func (d *DockerConfigFile) Applied(path string, ch credhelper.Change) (bool, error) {
	ok, err := credhelper.AppliedFile(path, ch, d.User.fileOptions()...)
	if err != nil {
		return false, fmt.Errorf("reading Docker config %s: %w", path, err)
	}
	return ok, nil
}

// Helper implements DockerConfig.
func (d *DockerConfigFile) Helper(path, hostPort string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading Docker config %s: %w", path, err)
	}
	var doc struct {
		CredHelpers map[string]string `json:"credHelpers"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("reading Docker config %s: %w", path, credhelper.ErrMalformed)
	}
	return doc.CredHelpers[hostPort], nil
}

// Foreign implements DockerConfig.
func (d *DockerConfigFile) Foreign(hostPort string) ([]string, error) {
	data, err := os.ReadFile(d.File)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading Docker config %s: %w", d.File, err)
	}
	found, err := credhelper.Foreign(data, hostPort, HelperName)
	if err != nil {
		return nil, fmt.Errorf("checking Docker config %s: %w", d.File, err)
	}
	return found, nil
}
