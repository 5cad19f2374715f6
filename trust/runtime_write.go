package trust

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
)

// RuntimeWriter applies RuntimePlans to the system under Root and takes them
// back. Install returns a RuntimeReceipt that the caller keeps (it is plain
// JSON-friendly data) and hands to Uninstall.
type RuntimeWriter struct {
	Root string       // "/" for the live system
	Log  *slog.Logger // nil: discard
}

// RuntimeReceipt records what Install changed, as paths the target machine
// sees, so that Uninstall removes exactly that.
type RuntimeReceipt struct {
	Registry string      `json:"registry"`
	Runtimes []Runtime   `json:"runtimes"`
	Files    []OwnedFile `json:"files,omitempty"` // files edgecr created, in creation order
	Dirs     []string    `json:"dirs,omitempty"`  // directories edgecr created, parents first
	K3s      *K3sReceipt `json:"k3s,omitempty"`
}

// OwnedFile is a file edgecr wrote, with the SHA-256 of what it wrote: a file
// changed since is left in place.
type OwnedFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	// Pending marks a file InstallWithIntent was about to write when it
	// handed the receipt out: if the file holds that content, edgecr wrote
	// it (and a crash kept the caller from recording so); if it is absent,
	// or holds what edgecr wrote before (Was), the write never happened.
	Pending bool   `json:"pending,omitempty"`
	Was     string `json:"was,omitempty"`
}

// hashes are the contents f may hold and still be edgecr's.
func (f OwnedFile) hashes() []string {
	if f.Pending && f.Was != "" {
		return []string{f.SHA256, f.Was}
	}
	return []string{f.SHA256}
}

// K3sReceipt records the registries.yaml entry edgecr merged.
type K3sReceipt struct {
	Path        string `json:"path"`
	Registry    string `json:"registry"`
	CAFile      string `json:"ca_file"`
	CreatedFile bool   `json:"created_file"` // registries.yaml did not exist before
}

func (w *RuntimeWriter) log() *slog.Logger {
	if w.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Log
}

// unrooted is the inverse of rooted: the path the target machine sees.
func (w *RuntimeWriter) unrooted(host string) string {
	if isLiveRoot(w.Root) {
		return host
	}
	rel, err := filepath.Rel(w.Root, host)
	if err != nil {
		return host
	}
	return "/" + filepath.ToSlash(rel)
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Install writes the plan. Files already holding the planned content are not
// rewritten. A file in the way with other content is ErrForeignFile, unless
// prior (the receipt of an earlier Install for the same registry, or nil)
// says edgecr wrote it and it is unchanged since. Everything is read and
// checked before the first write, so a malformed registries.yaml or a foreign
// file changes nothing. The receipt returned covers prior too; on a write
// error it still describes what was done, for Uninstall to roll back.
// changed lists the files written by this call.
func (w *RuntimeWriter) Install(ctx context.Context, plan RuntimePlan, prior *RuntimeReceipt) (rc RuntimeReceipt, changed []string, err error) {
	return w.InstallWithIntent(ctx, plan, prior, nil)
}

// InstallWithIntent is Install that first hands persist the receipt as it
// will be once every write is done (the files to write marked Pending, the
// directories to create, registries.yaml's entry), after every check and
// before the first write, for the caller to record: a crash between a write
// and the caller's record of its result then orphans nothing, since a
// later Install or Uninstall given that receipt knows the files as edgecr's.
// An error from persist stops it before any write. persist is not called
// when there is nothing to write.
func (w *RuntimeWriter) InstallWithIntent(ctx context.Context, plan RuntimePlan, prior *RuntimeReceipt, persist func(RuntimeReceipt) error) (rc RuntimeReceipt, changed []string, err error) {
	rc = RuntimeReceipt{Registry: plan.Registry}
	owned := map[string][]string{} // path: the contents that are edgecr's
	if prior != nil {
		if prior.Registry != plan.Registry {
			return rc, nil, fmt.Errorf("installing runtime trust for %s: prior receipt is for %s", plan.Registry, prior.Registry)
		}
		rc.Runtimes = slices.Clone(prior.Runtimes)
		rc.Files = slices.Clone(prior.Files)
		rc.Dirs = slices.Clone(prior.Dirs)
		if prior.K3s != nil {
			k := *prior.K3s
			rc.K3s = &k
		}
		for _, f := range prior.Files {
			owned[f.Path] = f.hashes()
		}
	}
	for _, rt := range plan.Runtimes {
		if !slices.Contains(rc.Runtimes, rt) {
			rc.Runtimes = append(rc.Runtimes, rt)
		}
	}

	// Read and check everything first.
	type step struct {
		f     PlannedFile
		host  string
		write bool
		own   bool
		was   string // the hash of edgecr's content it replaces
	}
	var steps []step
	for _, f := range plan.Files {
		host := rooted(w.Root, f.Path)
		if err := refuseSymlink(host); err != nil {
			return rc, nil, err
		}
		cur, ok, err := readIfExists(host)
		if err != nil {
			return rc, nil, err
		}
		s := step{f: f, host: host}
		switch {
		case !ok:
			s.write, s.own = true, true
		case bytes.Equal(cur, f.Content):
			s.own = len(owned[f.Path]) > 0
		case slices.Contains(owned[f.Path], sum(cur)):
			s.write, s.own, s.was = true, true, sum(cur)
		default:
			return rc, nil, fmt.Errorf("installing %s trust for %s: %w: %s", f.Runtime, plan.Registry, ErrForeignFile, host)
		}
		steps = append(steps, s)
	}
	var k3sOut []byte
	var k3sChanged, k3sCreated bool
	if plan.K3s != nil {
		host := rooted(w.Root, plan.K3s.Path)
		if err := refuseSymlink(host); err != nil {
			return rc, nil, err
		}
		cur, ok, err := readIfExists(host)
		if err != nil {
			return rc, nil, err
		}
		if k3sOut, k3sChanged, err = MergeK3sRegistries(cur, plan.K3s.Registry, plan.K3s.CAFile); err != nil {
			return rc, nil, fmt.Errorf("installing k3s trust for %s: %s: %w", plan.Registry, host, err)
		}
		k3sCreated = !ok
	}
	if err := ctx.Err(); err != nil {
		return rc, nil, err
	}

	// Record the intent, then write.
	if persist != nil {
		intent := rc.clone()
		planned := false
		for _, s := range steps {
			if s.write {
				planned = true
				intent.own(OwnedFile{Path: s.f.Path, SHA256: sum(s.f.Content), Pending: true, Was: s.was})
				w.planDirs(&intent, filepath.Dir(s.host))
			}
		}
		if plan.K3s != nil {
			if intent.K3s == nil {
				intent.K3s = &K3sReceipt{Path: plan.K3s.Path, Registry: plan.K3s.Registry, CAFile: plan.K3s.CAFile}
			}
			if k3sChanged {
				planned = true
				intent.K3s.CreatedFile = intent.K3s.CreatedFile || k3sCreated
				w.planDirs(&intent, filepath.Dir(rooted(w.Root, plan.K3s.Path)))
			}
		}
		if planned {
			if err := persist(intent); err != nil {
				return rc, nil, err
			}
		}
	}

	// CA files before the configuration that names them.
	for _, s := range steps {
		if s.write {
			if err := w.mkdirs(&rc, filepath.Dir(s.host)); err != nil {
				return rc, changed, err
			}
			w.log().Debug("writing runtime trust", "runtime", s.f.Runtime, "path", s.host)
			if err := writeFileAtomic(s.host, s.f.Content, 0o644); err != nil {
				return rc, changed, fmt.Errorf("installing %s trust for %s: %w", s.f.Runtime, plan.Registry, err)
			}
			changed = append(changed, s.host)
		}
		if s.own {
			rc.own(OwnedFile{Path: s.f.Path, SHA256: sum(s.f.Content)})
		}
	}
	if plan.K3s != nil {
		if rc.K3s == nil {
			rc.K3s = &K3sReceipt{Path: plan.K3s.Path, Registry: plan.K3s.Registry, CAFile: plan.K3s.CAFile}
		}
		if k3sChanged {
			host := rooted(w.Root, plan.K3s.Path)
			if err := w.mkdirs(&rc, filepath.Dir(host)); err != nil {
				return rc, changed, err
			}
			w.log().Debug("merging k3s registries.yaml", "path", host)
			// registries.yaml may hold registry passwords: a new one is 0600.
			if err := writeFileAtomic(host, k3sOut, 0o600); err != nil {
				return rc, changed, fmt.Errorf("installing k3s trust for %s: %w", plan.Registry, err)
			}
			rc.K3s.CreatedFile = rc.K3s.CreatedFile || k3sCreated
			changed = append(changed, host)
		}
	}
	return rc, changed, nil
}

// clone returns a deep copy of rc.
func (rc RuntimeReceipt) clone() RuntimeReceipt {
	c := rc
	c.Runtimes = slices.Clone(rc.Runtimes)
	c.Files = slices.Clone(rc.Files)
	c.Dirs = slices.Clone(rc.Dirs)
	if rc.K3s != nil {
		k := *rc.K3s
		c.K3s = &k
	}
	return c
}

// planDirs records in rc the directories mkdirs would create for dir.
func (w *RuntimeWriter) planDirs(rc *RuntimeReceipt, dir string) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || !errors.Is(err, fs.ErrNotExist) {
			break
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if d := w.unrooted(missing[i]); !slices.Contains(rc.Dirs, d) {
			rc.Dirs = append(rc.Dirs, d)
		}
	}
}

func (rc *RuntimeReceipt) own(f OwnedFile) {
	for i := range rc.Files {
		if rc.Files[i].Path == f.Path {
			rc.Files[i] = f
			return
		}
	}
	rc.Files = append(rc.Files, f)
}

// mkdirs creates dir (0755: these are public certificates) and records
// what it created.
func (w *RuntimeWriter) mkdirs(rc *RuntimeReceipt, dir string) error {
	created, err := mkdirAll(dir, 0o755)
	for _, d := range created {
		if u := w.unrooted(d); !slices.Contains(rc.Dirs, u) {
			rc.Dirs = append(rc.Dirs, u)
		}
	}
	return err
}

// Uninstall takes back what rc records: the registries.yaml entry (deleting
// the file if edgecr created it and nothing else is left in it), the files
// edgecr wrote if they are unchanged, and the directories it created if they
// are empty. kept lists what it left in place and why. A registries.yaml that
// no longer parses is left untouched (and so is the CA file it names).
func (w *RuntimeWriter) Uninstall(ctx context.Context, rc RuntimeReceipt) (kept []string, err error) {
	var errs []error
	keepCA := ""
	if rc.K3s != nil {
		if why, err := w.uninstallK3s(*rc.K3s); err != nil {
			errs = append(errs, err)
			keepCA = rc.K3s.CAFile
			kept = append(kept, why)
		}
	}
	if err := ctx.Err(); err != nil {
		return kept, errors.Join(append(errs, err)...)
	}
	for i := len(rc.Files) - 1; i >= 0; i-- {
		f := rc.Files[i]
		host := rooted(w.Root, f.Path)
		if f.Path == keepCA {
			kept = append(kept, host+" (registries.yaml still names it)")
			continue
		}
		cur, ok, err := readIfExists(host)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			continue
		}
		if !slices.Contains(f.hashes(), sum(cur)) {
			why := " (changed since edgecr wrote it)"
			if f.Pending && f.Was == "" {
				why = " (not edgecr's: it never held what edgecr was about to write)"
			}
			kept = append(kept, host+why)
			continue
		}
		w.log().Debug("removing runtime trust", "path", host)
		if _, err := removeFile(host); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(rc.Dirs) - 1; i >= 0; i-- {
		host := rooted(w.Root, rc.Dirs[i])
		gone, err := removeEmptyDir(host)
		if err != nil {
			errs = append(errs, err)
		} else if !gone {
			kept = append(kept, host+" (not empty)")
		}
	}
	if len(errs) > 0 {
		return kept, fmt.Errorf("uninstalling runtime trust for %s: %w", rc.Registry, errors.Join(errs...))
	}
	return kept, nil
}

func (w *RuntimeWriter) uninstallK3s(k K3sReceipt) (kept string, err error) {
	host := rooted(w.Root, k.Path)
	if err := refuseSymlink(host); err != nil {
		return host + " (symbolic link)", err
	}
	cur, ok, err := readIfExists(host)
	if err != nil {
		return host, err
	}
	if !ok {
		return "", nil
	}
	out, changed, err := RemoveK3sRegistries(cur, k.Registry, k.CAFile)
	if err != nil {
		return host + " (does not parse)", fmt.Errorf("removing k3s trust: %s: %w", host, err)
	}
	if !changed {
		out = cur
	}
	if k.CreatedFile && len(bytes.TrimSpace(out)) == 0 {
		w.log().Debug("removing k3s registries.yaml edgecr created", "path", host)
		if _, err := removeFile(host); err != nil {
			return host, err
		}
		return "", nil
	}
	if !changed {
		return "", nil
	}
	w.log().Debug("removing entry from k3s registries.yaml", "path", host)
	if err := writeFileAtomic(host, out, 0o600); err != nil {
		return host, fmt.Errorf("removing k3s trust: %w", err)
	}
	return "", nil
}

// Verify lists what of plan is not in place under Root (for edgecr status):
// files missing or different, and a missing registries.yaml entry. It needs
// no privileges beyond reading.
func (w *RuntimeWriter) Verify(_ context.Context, plan RuntimePlan) (missing []string, err error) {
	for _, f := range plan.Files {
		host := rooted(w.Root, f.Path)
		ok, err := sameContent(host, f.Content)
		if err != nil {
			return missing, err
		}
		if !ok {
			missing = append(missing, host)
		}
	}
	if plan.K3s != nil {
		host := rooted(w.Root, plan.K3s.Path)
		cur, _, err := readIfExists(host)
		if err != nil {
			return missing, err
		}
		_, changed, err := MergeK3sRegistries(cur, plan.K3s.Registry, plan.K3s.CAFile)
		if err != nil {
			return missing, fmt.Errorf("checking k3s trust: %s: %w", host, err)
		}
		if changed {
			missing = append(missing, fmt.Sprintf("%s: configs.%q.tls.ca_file", host, plan.K3s.Registry))
		}
	}
	return missing, nil
}
