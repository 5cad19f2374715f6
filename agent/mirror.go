package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgecr/edgecr/trust"
)

// DefaultMirrorPort is the port of the device's mirror listener (the
// sync configuration's mirror.listen) join points runtimes at unless
// --mirror-port says another.
const DefaultMirrorPort = 31002

// MirrorRecord is what `join --mirror` changed: every file, with its bytes
// from before, so that leave puts each back exactly.
type MirrorRecord struct {
	Registries []string `json:"registries"`
	// URL is the device's mirror, https://host:port.
	URL   string        `json:"url"`
	Files []*MirrorFile `json:"files"`
}

// The kinds of file join --mirror changes.
const (
	mirrorDockerDaemon    = "docker-daemon"    // daemon.json registry-mirrors
	mirrorContainerdHosts = "containerd-hosts" // certs.d/<registry>/hosts.toml
	mirrorK3s             = "k3s-registries"   // registries.yaml mirrors and configs.<mirror>.tls
	mirrorOwned           = "owned"            // a file of edgecr's (a CA copy, a drop-in)
)

// MirrorFile is one file join --mirror changed. Its bytes from before are
// copied to Backup (mode 0600 beside the state file, which anyone may
// read, while registries.yaml may hold passwords) and Mode is recorded
// before the write; Wrote is the sha256 of what join wrote, so that leave
// can tell whether the user changed the file since.
type MirrorFile struct {
	Path        string      `json:"path"`
	Kind        string      `json:"kind"`
	Registry    string      `json:"registry,omitempty"`
	Existed     bool        `json:"existed"`
	Backup      string      `json:"backup,omitempty"`
	BeforeSum   string      `json:"beforeSHA256,omitempty"`
	Mode        fs.FileMode `json:"mode,omitempty"`
	Wrote       string      `json:"wrote,omitempty"`
	CreatedDirs []string    `json:"createdDirs,omitempty"`
	// CAFile is the CA path a k3s registries.yaml names for the mirror.
	CAFile string `json:"caFile,omitempty"`

	unloaded bool // leave reloaded dockerd without the mirror already
}

// Mirror paths as the target machine sees them.
const (
	dockerDaemonJSON   = "/etc/docker/daemon.json"
	podmanRegistriesD  = "/etc/containers/registries.conf.d"
	dockerPIDFile      = "/var/run/docker.pid"
	containerdCAFileNm = "edgecr-mirror-ca.crt"
)

// mirrorBackupDir holds, beside the state file, the bytes from before of
// each file join --mirror changed.
const mirrorBackupDir = "mirror-backups"

// ErrMirrorName: a --mirror value that is not a registry host.
var ErrMirrorName = errors.New("not a registry host")

// CheckMirrorName refuses a --mirror value that is not a registry host
// name (docker.io, quay.io, registry.example.com:5000).
func CheckMirrorName(r string) error {
	if r == "" || strings.ContainsAny(r, "/\\ \t\n\"'[]") || strings.HasPrefix(r, ".") || strings.HasPrefix(r, "-") {
		return fmt.Errorf("--mirror %q: %w (e.g. docker.io)", r, ErrMirrorName)
	}
	return nil
}

// mirror makes the device the mirror of o.Mirrors for the runtimes found:
// Docker (docker.io only: registry-mirrors, applied with a live reload),
// containerd (certs.d/<registry>/hosts.toml) and podman (a
// registries.conf.d drop-in). Each file's bytes are recorded before it is
// written; a rerun adds what is missing and changes nothing else.
func (j *joinRun) mirror(ctx context.Context) error {
	if len(j.o.Mirrors) == 0 {
		return nil
	}
	e := j.e
	port := j.o.MirrorPort
	if port == 0 {
		port = DefaultMirrorPort
	}
	hostPort := net.JoinHostPort(e.Host, strconv.Itoa(port))
	url := "https://" + hostPort
	if e.Mirror == nil {
		e.Mirror = &MirrorRecord{URL: url}
	} else if e.Mirror.URL != url {
		return fmt.Errorf("this client already mirrors through %s: run `edgecr leave` first to use %s", e.Mirror.URL, url)
	}
	found := j.DetectRuntimes()
	reloadDocker := false
	for _, reg := range j.o.Mirrors {
		if !slices.Contains(e.Mirror.Registries, reg) {
			e.Mirror.Registries = append(e.Mirror.Registries, reg)
		}
		if slices.Contains(found, trust.Docker) && j.GOOS == "linux" {
			if reg != "docker.io" {
				j.emit("mirror", "docker", StatusWarning, fmt.Sprintf("Docker takes mirrors for docker.io only: %s is mirrored for the other runtimes", reg))
			} else {
				ca := path.Join(j.RuntimePaths.Docker, hostPort, "ca.crt")
				if _, err := j.mirrorEdit(ctx, reg, ca, mirrorOwned, func([]byte) ([]byte, error) { return []byte(e.CAPEM), nil }); err != nil {
					return err
				}
				changed, err := j.mirrorEdit(ctx, reg, dockerDaemonJSON, mirrorDockerDaemon, func(b []byte) ([]byte, error) { return dockerAddMirror(b, url) })
				if err != nil {
					return err
				}
				reloadDocker = reloadDocker || changed
			}
		}
		if slices.Contains(found, trust.Containerd) && j.RuntimePaths.Containerd != "" {
			dir := path.Join(j.RuntimePaths.Containerd, reg)
			ca := path.Join(dir, containerdCAFileNm)
			if _, err := j.mirrorEdit(ctx, reg, ca, mirrorOwned, func([]byte) ([]byte, error) { return []byte(e.CAPEM), nil }); err != nil {
				return err
			}
			if _, err := j.mirrorEdit(ctx, reg, path.Join(dir, "hosts.toml"), mirrorContainerdHosts, func(b []byte) ([]byte, error) {
				return containerdAddMirror(b, reg, url, ca)
			}); err != nil {
				return err
			}
		}
		if slices.Contains(found, trust.Containers) && j.RuntimePaths.Containers != "" {
			ca := path.Join(j.RuntimePaths.Containers, hostPort, "ca.crt")
			if _, err := j.mirrorEdit(ctx, reg, ca, mirrorOwned, func([]byte) ([]byte, error) { return []byte(e.CAPEM), nil }); err != nil {
				return err
			}
			dropIn := path.Join(podmanRegistriesD, "50-edgecr-mirror-"+strings.ReplaceAll(reg, ":", "_")+".conf")
			if _, err := j.mirrorEdit(ctx, reg, dropIn, mirrorOwned, func([]byte) ([]byte, error) { return podmanDropIn(reg, hostPort), nil }); err != nil {
				return err
			}
		}
		if slices.Contains(found, trust.K3s) && j.RuntimePaths.K3sConfig != "" {
			ca := path.Join(j.RuntimePaths.K3sCADir, "mirror-"+strings.ReplaceAll(hostPort, ":", "_")+".crt")
			if _, err := j.mirrorEdit(ctx, reg, ca, mirrorOwned, func([]byte) ([]byte, error) { return []byte(e.CAPEM), nil }); err != nil {
				return err
			}
			changed, err := j.mirrorEdit(ctx, reg, j.RuntimePaths.K3sConfig, mirrorK3s, func(b []byte) ([]byte, error) {
				out, err := k3sAddMirror(b, reg, url)
				if err != nil {
					return nil, err
				}
				out, _, err = trust.MergeK3sRegistries(out, hostPort, ca)
				return out, err
			})
			if err != nil {
				return err
			}
			if f := e.Mirror.file(Rooted(j.GOOS, j.Root, j.RuntimePaths.K3sConfig)); f != nil {
				f.CAFile = ca
			}
			if changed {
				j.emit("mirror", "k3s", StatusWarning, trust.K3sRestartMessage)
			}
		}
	}
	if reloadDocker {
		if err := j.reloadDocker("join"); err != nil {
			return err
		}
	}
	return nil
}

// mirrorEdit writes edit(current) to p (a path as the target sees it),
// recording its bytes from before in the state first; changed is false
// when the file already said it.
func (j *joinRun) mirrorEdit(ctx context.Context, reg, p, kind string, edit func([]byte) ([]byte, error)) (changed bool, err error) {
	full := Rooted(j.GOOS, j.Root, p)
	cur, mode, existed, err := readMirrorFile(full)
	if err != nil {
		return false, err
	}
	want, err := edit(cur)
	if err != nil {
		return false, fmt.Errorf("editing %s: %w", full, err)
	}
	rec := j.e.Mirror.file(full)
	if existed && bytes.Equal(cur, want) {
		if rec == nil {
			j.emit("mirror", "mirror", StatusUnchanged, "unchanged: "+full+" already says it")
		}
		return false, nil
	}
	if rec == nil {
		rec = &MirrorFile{Path: full, Kind: kind, Registry: reg, Existed: existed, Mode: mode}
		rec.CreatedDirs = missingDirs(filepath.Dir(full))
		if existed {
			dir := filepath.Join(filepath.Dir(j.State.Path()), mirrorBackupDir)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return false, fmt.Errorf("creating %s: %w", dir, err)
			}
			rec.Backup = filepath.Join(dir, sum([]byte(full))[:32])
			rec.BeforeSum = sum(cur)
			if err := writeFileAtomic(rec.Backup, cur, 0o600); err != nil {
				return false, fmt.Errorf("keeping a copy of %s: %w", full, err)
			}
		}
		j.e.Mirror.Files = append(j.e.Mirror.Files, rec)
	}
	rec.Wrote = sum(want)
	if err := j.save(); err != nil { // the record first: a crash leaves leave knowing
		return false, err
	}
	if _, err := mkdirAllRecord(filepath.Dir(full), 0o755); err != nil {
		return false, fmt.Errorf("creating the directory of %s: %w", full, err)
	}
	if mode == 0 {
		mode = 0o644
	}
	if err := writeFileAtomic(full, want, mode); err != nil {
		return false, fmt.Errorf("writing %s: %w", full, err)
	}
	j.emit("mirror", "mirror", StatusChanged, "wrote "+full)
	return true, nil
}

func (r *MirrorRecord) file(p string) *MirrorFile {
	for _, f := range r.Files {
		if f.Path == p {
			return f
		}
	}
	return nil
}

func readMirrorFile(p string) (content []byte, mode fs.FileMode, existed bool, err error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, fmt.Errorf("reading %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, false, fmt.Errorf("reading %s: not a regular file (%s)", p, fi.Mode().Type())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, 0, false, fmt.Errorf("reading %s: %w", p, err)
	}
	return b, fi.Mode().Perm(), true, nil
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// reloadDocker makes dockerd read daemon.json again (SIGHUP: its live
// reload, which takes registry-mirrors; never a restart). Under --root
// there is no daemon of that machine to signal.
func (s *System) reloadDockerd() (pid int, err error) {
	if !IsLiveRoot(s.Root) || s.SignalDockerd == nil {
		return 0, nil
	}
	return s.SignalDockerd()
}

func (j *joinRun) reloadDocker(step string) error {
	pid, err := j.reloadDockerd()
	if err != nil {
		return fmt.Errorf("reloading dockerd for its registry-mirrors: %w", err)
	}
	if pid == 0 {
		return nil
	}
	j.emit(step, "docker", StatusChanged, fmt.Sprintf("reloaded dockerd (pid %d, SIGHUP: no restart)", pid))
	if j.DockerdMirrors == nil {
		return nil
	}
	// The reload is asynchronous: say when it took, or that it did not.
	url := j.e.Mirror.URL
	for deadline := time.Now().Add(15 * time.Second); ; {
		ms, err := j.DockerdMirrors(context.Background())
		if err == nil && slices.ContainsFunc(ms, func(m string) bool { return strings.TrimSuffix(m, "/") == url }) {
			j.emit(step, "docker", StatusChanged, "dockerd uses the mirror "+url)
			return nil
		}
		if time.Now().After(deadline) {
			j.emit(step, "docker", StatusWarning, fmt.Sprintf("dockerd does not list the mirror %s 15 s after the reload (%v): see dockerd's log", url, err))
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// undoMirror puts back every file join --mirror changed: the bytes and
// mode from before (or no file) when the file still holds what join
// wrote; when the user changed it since, only edgecr's entry comes out
// and the rest of their change stays (an owned file they changed is left
// in place, with a warning).
func (s *System) undoMirror(ctx context.Context, e *Entry, rep *reporter, step string, done Status) error {
	r := e.Mirror
	if r == nil {
		return nil
	}
	reload := false
	var errs []error
	if err := s.unloadDockerMirror(ctx, r, rep, step, done); err != nil {
		return err
	}
	for i := len(r.Files) - 1; i >= 0; i-- {
		f := r.Files[i]
		changed, err := undoMirrorFile(f, r, rep, step)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if changed {
			rep.emit(step, f.Kind, done, "restored "+f.Path)
			reload = reload || (f.Kind == mirrorDockerDaemon && !f.unloaded)
		}
		removeBackup(f)
		r.Files = slices.Delete(r.Files, i, i+1)
	}
	if reload {
		pid, err := s.reloadDockerd()
		if err != nil {
			errs = append(errs, fmt.Errorf("reloading dockerd after restoring daemon.json: %w", err))
		} else if pid != 0 {
			rep.emit(step, "docker", done, fmt.Sprintf("reloaded dockerd (pid %d, SIGHUP: no restart)", pid))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	e.Mirror = nil
	_ = os.Remove(filepath.Join(filepath.Dir(s.State.Path()), mirrorBackupDir)) // once empty
	return nil
}

// removeBackup deletes a file's copy from before join, once it is no
// longer needed.
func removeBackup(f *MirrorFile) {
	if f.Backup != "" {
		_ = os.Remove(f.Backup)
	}
}

// unloadDockerMirror is the first half of taking the mirror out of a
// running dockerd: its live reload changes only what daemon.json sets, so
// putting back a daemon.json without registry-mirrors would leave the
// mirror in force until the next restart. daemon.json first says the
// mirrors without ours (an empty list, if need be), dockerd reloads it,
// and once dockerd no longer lists ours the caller puts the bytes from
// before back (dockerd keeps what it loaded).
func (s *System) unloadDockerMirror(ctx context.Context, r *MirrorRecord, rep *reporter, step string, done Status) error {
	if !IsLiveRoot(s.Root) || s.SignalDockerd == nil {
		return nil
	}
	var f *MirrorFile
	for _, g := range r.Files {
		if g.Kind == mirrorDockerDaemon {
			f = g
		}
	}
	if f == nil {
		return nil
	}
	cur, mode, existed, err := readMirrorFile(f.Path)
	if err != nil || !existed || !dockerHasMirror(cur, r.URL) {
		return err
	}
	tmp, err := dockerDropMirrorExplicit(cur, r.URL)
	if err != nil {
		return fmt.Errorf("removing edgecr's mirror from %s: %w", f.Path, err)
	}
	if err := writeFileAtomic(f.Path, tmp, mode); err != nil {
		return fmt.Errorf("writing %s: %w", f.Path, err)
	}
	if sum(cur) == f.Wrote {
		f.Wrote = sum(tmp) // still as join left it, for what follows
	}
	pid, err := s.reloadDockerd()
	if err != nil {
		return fmt.Errorf("reloading dockerd without the mirror: %w", err)
	}
	f.unloaded = true
	rep.emit(step, "docker", done, fmt.Sprintf("reloaded dockerd (pid %d, SIGHUP: no restart) without the mirror %s", pid, r.URL))
	// Wait for the reload to take before daemon.json loses the key.
	if s.DockerdMirrors == nil {
		return sleepCtx(ctx, 2*time.Second)
	}
	for deadline := time.Now().Add(15 * time.Second); ; {
		ms, err := s.DockerdMirrors(ctx)
		if err == nil && !slices.ContainsFunc(ms, func(m string) bool { return strings.TrimSuffix(m, "/") == r.URL }) {
			return nil
		}
		if time.Now().After(deadline) {
			rep.emit(step, "docker", StatusWarning, fmt.Sprintf("dockerd still lists the mirror %s 15 s after the reload (%v): a restart of dockerd drops it", r.URL, err))
			return nil
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func undoMirrorFile(f *MirrorFile, r *MirrorRecord, rep *reporter, step string) (changed bool, err error) {
	url := r.URL
	if f.Kind == mirrorK3s && !strings.HasPrefix(url, "https://") {
		return false, fmt.Errorf("the state's mirror URL %q is not https://host:port", url)
	}
	cur, mode, existed, err := readMirrorFile(f.Path)
	if err != nil {
		return false, err
	}
	switch {
	case !existed && !f.Existed:
		removeEmptyDirs(f.CreatedDirs)
		return false, nil
	case existed && sum(cur) == f.Wrote, !existed:
		// As join left it (or removed by someone since): what was there before.
		if !f.Existed {
			if err := os.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return false, fmt.Errorf("removing %s: %w", f.Path, err)
			}
			removeEmptyDirs(f.CreatedDirs)
			return existed, nil
		}
		before, err := os.ReadFile(f.Backup)
		if err != nil {
			return false, fmt.Errorf("reading the copy of %s from before join: %w", f.Path, err)
		}
		if sum(before) != f.BeforeSum {
			return false, fmt.Errorf("the copy %s of %s from before join is not what join copied (sha256 %s, want %s)", f.Backup, f.Path, sum(before), f.BeforeSum)
		}
		if err := writeFileAtomic(f.Path, before, f.Mode); err != nil {
			return false, fmt.Errorf("restoring %s: %w", f.Path, err)
		}
		if err := os.Chmod(f.Path, f.Mode); err != nil {
			return false, fmt.Errorf("restoring the mode of %s: %w", f.Path, err)
		}
		removeBackup(f)
		return true, nil
	}
	// Changed since join: take out edgecr's entry only.
	var out []byte
	switch f.Kind {
	case mirrorDockerDaemon:
		out, changed, err = dockerRemoveMirror(cur, url)
	case mirrorContainerdHosts:
		out, changed, err = containerdRemoveMirror(cur)
	case mirrorK3s:
		var c2 bool
		out = cur
		for _, reg := range r.Registries { // one registries.yaml for them all
			if err == nil {
				out, c2, err = k3sRemoveMirror(out, reg, url)
				changed = changed || c2
			}
		}
		if err == nil && f.CAFile != "" {
			out, c2, err = trust.RemoveK3sRegistries(out, strings.TrimPrefix(url, "https://"), f.CAFile)
			changed = changed || c2
		}
	default:
		rep.emit(step, f.Kind, StatusWarning, "left in place: "+f.Path+" was changed after join")
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("removing edgecr's mirror from %s: %w", f.Path, err)
	}
	if !changed {
		return false, nil
	}
	if !f.Existed && len(bytes.TrimSpace(out)) == 0 || (f.Kind == mirrorDockerDaemon && !f.Existed && string(bytes.TrimSpace(out)) == "{}") {
		if err := os.Remove(f.Path); err != nil {
			return false, fmt.Errorf("removing %s: %w", f.Path, err)
		}
		removeEmptyDirs(f.CreatedDirs)
		return true, nil
	}
	if err := writeFileAtomic(f.Path, out, mode); err != nil {
		return false, fmt.Errorf("writing %s: %w", f.Path, err)
	}
	rep.emit(step, f.Kind, StatusWarning, f.Path+" was changed after join: removed edgecr's mirror entry only, the rest of the change is kept")
	return true, nil
}

// MirrorStatus is one mirror entry `edgecr status` shows.
type MirrorStatus struct {
	Registry string `json:"registry"`
	Path     string `json:"path"`
	Kind     string `json:"kind"`
	InForce  bool   `json:"inForce"`
	Detail   string `json:"detail"`
}

// mirrorStatus says, for each configuration file of a mirror record,
// whether it still holds edgecr's entry.
func mirrorStatus(r *MirrorRecord) []MirrorStatus {
	if r == nil {
		return nil
	}
	var out []MirrorStatus
	for _, f := range r.Files {
		if f.Kind == mirrorOwned && !strings.HasSuffix(f.Path, ".conf") {
			continue // a CA copy
		}
		cur, _, existed, err := readMirrorFile(f.Path)
		st := MirrorStatus{Registry: f.Registry, Path: f.Path, Kind: f.Kind}
		switch {
		case err != nil:
			st.Detail = err.Error()
		case !existed:
			st.Detail = "the file is gone"
		case f.Kind == mirrorDockerDaemon:
			st.InForce = dockerHasMirror(cur, r.URL)
		case f.Kind == mirrorContainerdHosts:
			st.InForce = containerdHasMirror(cur, r.URL)
		case f.Kind == mirrorK3s:
			st.InForce = !slices.ContainsFunc(r.Registries, func(reg string) bool { return !k3sHasMirror(cur, reg, r.URL) })
		default:
			st.InForce = sum(cur) == f.Wrote
		}
		if st.Detail == "" {
			if st.InForce {
				st.Detail = "lists " + r.URL
			} else {
				st.Detail = "does not list " + r.URL
			}
		}
		out = append(out, st)
	}
	return out
}
