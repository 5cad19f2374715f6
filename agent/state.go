package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/edgecr/edgecr/credhelper"
	"github.com/edgecr/edgecr/trust"
)

// The join steps, in order. Their names are the values of
// EDGECR_TEST_CRASH_AFTER and of Entry.Steps.
const (
	StepBootstrap   = "bootstrap"
	StepHosts       = "hosts"
	StepTrust       = "trust"
	StepCredentials = "credentials"
	StepVerify      = "verify"
)

// Steps lists the join steps in order.
func Steps() []string {
	return []string{StepBootstrap, StepHosts, StepTrust, StepCredentials, StepVerify}
}

// stateVersion is the format version this package writes and reads.
const stateVersion = 1

// State is what the agent remembers between join, status and leave: one
// Entry per joined registry. See the package documentation for the format.
type State struct {
	Version int `json:"version"`
	// CreatedDirs are the directories created for the state file, outermost
	// first; they are removed with the file when the last entry goes.
	CreatedDirs []string `json:"createdDirs,omitempty"`
	Registries  []*Entry `json:"registries"`
}

// Entry is one joined registry: the device, the client identity, and what
// each join step changed, so that leave undoes exactly that and a rerun
// after a crash picks up where the last run stopped.
type Entry struct {
	Registry string `json:"registry"` // host:port, the key
	Host     string `json:"host"`
	Port     int    `json:"port"`
	IP       string `json:"ip"`
	// Addrs are every replica's address of a device with several (issue
	// 12), IP first; empty for a device with one address.
	Addrs     []string  `json:"addrs,omitempty"`
	DeviceURL string    `json:"deviceURL"`
	Pin       string    `json:"pin"` // sha256 of the CA's DER, hex
	CAPEM     string    `json:"caPEM"`
	ClientID  string    `json:"clientID"`
	Username  string    `json:"username"`
	Role      string    `json:"role,omitempty"`
	Name      string    `json:"name,omitempty"`
	JoinedAt  time.Time `json:"joinedAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// Steps are the join steps completed, in order.
	Steps []string `json:"steps"`
	// PendingSecret holds the client's password from the bootstrap until the
	// credentials step has stored it for the helper (then it is cleared), so
	// that a crash in between does not lose a credential whose token is
	// spent. It is never in the state file, which anyone may read (`edgecr
	// status` runs unprivileged): StateFile keeps it in a file of its own,
	// mode 0600 (SecretsPath).
	PendingSecret string `json:"-"`

	Hosts        *HostsRecord          `json:"hosts,omitempty"`
	Trust        *TrustRecord          `json:"trust,omitempty"`
	Runtimes     *trust.RuntimeReceipt `json:"runtimes,omitempty"`
	Credential   *CredentialRecord     `json:"credential,omitempty"`
	DockerConfig *DockerRecord         `json:"dockerConfig,omitempty"`
	Browsers     *BrowsersRecord       `json:"browsers,omitempty"`
	Mirror       *MirrorRecord         `json:"mirror,omitempty"`
}

// HostsRecord is the hosts entry the hosts step made.
type HostsRecord struct {
	Path string `json:"path"`
	Host string `json:"host"`
	IP   string `json:"ip"`
	// IPs are every address the block maps the host to, when more than IP.
	IPs   []string `json:"ips,omitempty"`
	Added bool     `json:"added"` // a join changed the file (rather than finding the entry)
}

// TrustRecord is the OS trust store entry the trust step made.
type TrustRecord struct {
	Kind      trust.Kind `json:"kind"`
	Name      string     `json:"name"`
	Installed bool       `json:"installed"` // join added the CA (recorded before it does): leave removes only such a CA
}

// CredentialRecord is the credential the credentials step stored for the
// helper (the secret itself lives only in the credentials file).
type CredentialRecord struct {
	Path string `json:"path"`
	Key  string `json:"key"` // host:port
	// FileExisted says whether the credentials file was there before, and
	// CreatedDirs which directories join made for it (outermost first):
	// leave removes what join created, once nothing else is in it.
	FileExisted bool     `json:"fileExisted"`
	CreatedDirs []string `json:"createdDirs,omitempty"`
}

// DockerRecord is the credHelpers entry the credentials step registered.
type DockerRecord struct {
	Path   string            `json:"path"`
	Change credhelper.Change `json:"change"`
	// Pending says the Change was recorded before config.json was written
	// and the write was not confirmed: it is ours if config.json shows it
	// (credhelper.Applied); if not, nothing of it was written but,
	// perhaps, the directories in Change.CreatedDirs.
	Pending bool `json:"pending,omitempty"`
}

// Addresses are the addresses the registry host maps to: every replica's,
// or the one IP.
func (e *Entry) Addresses() []string {
	if len(e.Addrs) > 1 {
		return e.Addrs
	}
	return []string{e.IP}
}

// Done reports whether the step completed.
func (e *Entry) Done(step string) bool { return slices.Contains(e.Steps, step) }

// Complete reports whether every join step completed.
func (e *Entry) Complete() bool {
	for _, s := range Steps() {
		if !e.Done(s) {
			return false
		}
	}
	return true
}

func (e *Entry) markDone(step string) {
	if !e.Done(step) {
		e.Steps = append(e.Steps, step)
	}
}

// Find returns the entry of registry (host:port), or nil.
func (s *State) Find(registry string) *Entry {
	for _, e := range s.Registries {
		if e.Registry == registry {
			return e
		}
	}
	return nil
}

// FindPin returns the entry of the device whose CA has this pin, or nil.
func (s *State) FindPin(pin string) *Entry {
	for _, e := range s.Registries {
		if e.Pin == pin {
			return e
		}
	}
	return nil
}

func (s *State) put(e *Entry) {
	for i, x := range s.Registries {
		if x.Registry == e.Registry {
			s.Registries[i] = e
			return
		}
	}
	s.Registries = append(s.Registries, e)
}

func (s *State) remove(registry string) {
	s.Registries = slices.DeleteFunc(s.Registries, func(e *Entry) bool { return e.Registry == registry })
}

// StateFile is the state on disk: JSON, mode 0644 in a 0755 directory
// (it holds no secret, and `edgecr status` reads it unprivileged), written
// atomically (temp file, fsync, rename). The entries' pending secrets live
// beside it in SecretsPath, mode 0600, written before the state that needs
// them. Join and leave hold its lock (a ".lock" file next to it) from
// before they read it until they are done, so that two agents never lose
// each other's entries; status reads it without the lock.
type StateFile struct {
	path string
	// made are directories this process created for the file; known are
	// those the file says earlier runs created.
	made, known []string
	// secrets is what SecretsPath holds, as last read or written, when
	// secretsKnown.
	secrets      map[string]string
	secretsKnown bool
	// dirsChecked is set once the state's directories have their mode.
	dirsChecked bool
}

// stateFileMode is the state file's mode: readable by anyone.
const stateFileMode = 0o644

// secretsFileName is the pending secrets' file, beside the state.
const secretsFileName = "pending-secrets.json"

// secretsFile is the JSON document at SecretsPath.
type secretsFile struct {
	Version int `json:"version"`
	// Secrets maps a registry (host:port) to its entry's pending secret.
	Secrets map[string]string `json:"secrets"`
}

// NewStateFile returns the state file at path (see StatePath). Nothing is
// read or created until a method is called.
func NewStateFile(path string) *StateFile { return &StateFile{path: path} }

// Path returns the file's path.
func (f *StateFile) Path() string { return f.path }

// SecretsPath returns the file that holds the entries' pending secrets
// (mode 0600), beside the state file; it exists only while one is pending.
func (f *StateFile) SecretsPath() string {
	return filepath.Join(filepath.Dir(f.path), secretsFileName)
}

// Load reads the state; a missing file is an empty state. A file that does
// not parse is an error naming it, and is never overwritten.
func (f *StateFile) Load() (*State, error) {
	data, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return &State{Version: stateVersion}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading state %s: %w", f.path, err)
	}
	var st State
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("reading state %s: malformed JSON: %w (fix or remove the file)", f.path, err)
	}
	if st.Version > stateVersion {
		return nil, fmt.Errorf("reading state %s: format version %d is newer than this edgecr (%d)", f.path, st.Version, stateVersion)
	}
	for i, e := range st.Registries {
		if e == nil || e.Registry == "" {
			return nil, fmt.Errorf("reading state %s: entry %d has no registry", f.path, i)
		}
	}
	// A state written by an earlier edgecr may hold pending secrets itself;
	// the next Save moves them to their own file.
	var legacy struct {
		Registries []struct {
			Registry      string `json:"registry"`
			PendingSecret string `json:"pendingSecret"`
		} `json:"registries"`
	}
	_ = json.Unmarshal(data, &legacy)
	for _, l := range legacy.Registries {
		if e := st.Find(l.Registry); e != nil && l.PendingSecret != "" {
			e.PendingSecret = l.PendingSecret
		}
	}
	secrets, err := f.loadSecrets()
	if err != nil {
		return nil, err
	}
	for _, e := range st.Registries {
		if s := secrets[e.Registry]; s != "" {
			e.PendingSecret = s
		}
	}
	f.known = st.CreatedDirs
	return &st, nil
}

// loadSecrets reads SecretsPath. A missing file holds nothing; one this
// process may not read (`edgecr status` run unprivileged) is skipped: only
// join and leave, as root, need the secrets.
func (f *StateFile) loadSecrets() (map[string]string, error) {
	p := f.SecretsPath()
	data, err := os.ReadFile(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		f.secrets, f.secretsKnown = nil, true
		return nil, nil
	case errors.Is(err, fs.ErrPermission):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	var sf secretsFile
	if err := json.Unmarshal(data, &sf); err != nil {
		// Never quote the content: it is secret.
		return nil, fmt.Errorf("reading %s: malformed JSON (fix or remove the file)", p)
	}
	f.secrets, f.secretsKnown = maps.Clone(sf.Secrets), true
	return sf.Secrets, nil
}

// saveSecrets makes SecretsPath hold the pending secrets of st's entries,
// removing it when there are none; it writes only what changed.
func (f *StateFile) saveSecrets(st *State) error {
	want := map[string]string{}
	for _, e := range st.Registries {
		if e.PendingSecret != "" {
			want[e.Registry] = e.PendingSecret
		}
	}
	if f.secretsKnown && maps.Equal(want, f.secrets) {
		return nil
	}
	p := f.SecretsPath()
	if len(want) == 0 {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", p, err)
		}
	} else {
		data, err := json.MarshalIndent(secretsFile{Version: stateVersion, Secrets: want}, "", "  ")
		if err != nil {
			return fmt.Errorf("encoding %s: %w", p, err)
		}
		if err := protectStateDir(filepath.Dir(p)); err != nil {
			return fmt.Errorf("protecting the state directory before writing %s: %w", p, err)
		}
		if err := writeFileAtomicWith(p, append(data, '\n'), 0o600, createSecretTemp); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	f.secrets, f.secretsKnown = want, true
	return nil
}

// Save writes st, or removes the file when st has no entries left.
func (f *StateFile) Save(st *State) error {
	st.Version = stateVersion
	for _, d := range f.made {
		if !slices.Contains(st.CreatedDirs, d) {
			st.CreatedDirs = append(st.CreatedDirs, d)
		}
	}
	f.known = st.CreatedDirs
	// The secrets first: the state never names a pending secret that is
	// not on disk yet.
	if err := f.saveSecrets(st); err != nil {
		return err
	}
	if len(st.Registries) == 0 {
		if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing state %s: %w", f.path, err)
		}
		return nil
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding state: %w", err)
	}
	f.openDirs(st.CreatedDirs)
	if err := writeFileAtomic(f.path, append(data, '\n'), stateFileMode); err != nil {
		return fmt.Errorf("writing state %s: %w", f.path, err)
	}
	return nil
}

// openDirs gives the directories edgecr made for the state mode 0755, so
// that anyone can read the state: Mkdir is subject to the umask, and an
// earlier edgecr made them 0700.
func (f *StateFile) openDirs(dirs []string) {
	if f.dirsChecked || runtime.GOOS == "windows" {
		return
	}
	f.dirsChecked = true
	for _, d := range dirs {
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() && fi.Mode().Perm() != stateDirMode {
			_ = os.Chmod(d, stateDirMode)
		}
	}
}

// lockTimeout bounds the wait for another agent's join or leave.
const lockTimeout = 2 * time.Minute

// stateDirMode is the mode of the directories made for the state.
const stateDirMode = 0o755

// Lock takes the state's lock, creating the state directory if needed, and
// returns the function that releases it. Release also tidies up: when no
// state file is left, the lock file and the directories edgecr created for
// the state are removed (if empty), so that a join that changed nothing, or
// a leave of the last registry, leaves no trace.
//
// Because release removes the lock file, a waiting locker may get the lock
// of a file that is no longer at the path (or the directories it was
// creating may vanish): it then starts over, so that at most one agent
// holds the lock of the file at the path.
func (f *StateFile) Lock(ctx context.Context) (release func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, lockTimeout)
	defer cancel()
	lp := f.path + ".lock"
	retry := func() error {
		select {
		case <-ctx.Done():
			return fmt.Errorf("locking %s: another edgecr join or leave is running: %w", lp, ctx.Err())
		case <-time.After(lockPollInterval):
			return nil
		}
	}
	for {
		made, err := mkdirAllRecord(filepath.Dir(f.path), stateDirMode)
		for _, d := range made {
			if !slices.Contains(f.made, d) {
				f.made = append(f.made, d)
			}
		}
		if err == nil && len(made) > 0 {
			err = protectStateDir(filepath.Dir(f.path))
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && retry() == nil {
				continue // another agent's release removed a parent meanwhile
			}
			f.removeMadeDirs()
			return nil, fmt.Errorf("creating the state directory: %w", err)
		}
		lf, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && retry() == nil {
				continue
			}
			f.removeMadeDirs()
			return nil, fmt.Errorf("opening lock %s: %w", lp, err)
		}
		for {
			ok, err := tryLock(lf)
			if err != nil {
				lf.Close()
				f.removeMadeDirs()
				return nil, fmt.Errorf("locking %s: %w", lp, err)
			}
			if ok {
				break
			}
			if err := retry(); err != nil {
				lf.Close()
				return nil, err
			}
		}
		if !lockedAtPath(lf, lp) {
			// The holder before us removed the file we waited on: its
			// lock no longer excludes anyone who opens the path now.
			_ = unlock(lf)
			lf.Close()
			if err := retry(); err != nil {
				return nil, err
			}
			continue
		}
		return func() {
			f.tidy() // still holding the lock: nobody can be using the file
			_ = unlock(lf)
			lf.Close()
			if runtime.GOOS == "windows" {
				f.tidy() // Windows removes no open file
			}
		}, nil
	}
}

// lockPollInterval is how often Lock retries.
const lockPollInterval = 20 * time.Millisecond

// lockedAtPath reports whether lf is the file at path now.
func lockedAtPath(lf *os.File, path string) bool {
	held, err := lf.Stat()
	if err != nil {
		return false
	}
	cur, err := os.Stat(path)
	return err == nil && os.SameFile(held, cur)
}

// removeMadeDirs removes the directories this process created for the
// state, if empty; for a Lock that failed before it held the lock, which
// must not remove a lock file another agent may hold.
func (f *StateFile) removeMadeDirs() {
	dirs := slices.Clone(f.made)
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) }) // innermost first
	for _, d := range dirs {
		_ = os.Remove(d)
	}
}

// HostsLockPath is the lock file hosts-file writers take, beside the state
// file at statePath.
func HostsLockPath(statePath string) string { return statePath + ".hosts.lock" }

// tidy removes the lock file and the directories edgecr created for the
// state, when there is no state file. Only the holder of the lock calls it.
func (f *StateFile) tidy() {
	if _, err := os.Lstat(f.path); !errors.Is(err, fs.ErrNotExist) {
		return
	}
	_ = os.Remove(f.SecretsPath()) // pending for an entry never saved
	_ = os.Remove(f.path + ".lock")
	_ = os.Remove(HostsLockPath(f.path))
	dirs := slices.Concat(f.known, f.made)
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) }) // innermost first
	for _, d := range dirs {
		_ = os.Remove(d) // fails, as it should, unless empty
	}
}
