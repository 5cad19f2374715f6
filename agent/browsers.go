package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/edgecr/edgecr/trust"
)

// BrowserTrust is the user's browsers' own CA trust (trust.NSS): on Linux,
// Chromium and Firefox ignore the OS trust store and read NSS databases in
// the user's home.
type BrowserTrust interface {
	// Find returns the NSS databases (directories) of the user's browsers.
	Find() ([]string, error)
	Install(ctx context.Context, dir, name string, pem []byte) (changed bool, err error)
	Uninstall(ctx context.Context, dir, name string, pem []byte) (changed bool, err error)
	Installed(ctx context.Context, dir, name string, pem []byte) (bool, error)
}

// BrowsersRecord is what `join --browsers` did to the browsers' NSS
// databases: the CA under Name in each database of Added. Pending is a
// database about to get it (recorded before certutil runs, so that a
// crash cannot leave a certificate leave does not know about). A database
// that held the CA before join is in neither: leave leaves it alone.
type BrowsersRecord struct {
	Name    string   `json:"name"`
	Added   []string `json:"added"`
	Pending []string `json:"pending,omitempty"`
}

// CheckBrowsers is the status hop for the browsers' NSS databases.
const CheckBrowsers = "CA in browsers (NSS)"

const certutilInstallFix = "install certutil (Debian, Ubuntu: apt install libnss3-tools; Fedora: dnf install nss-tools)"

// browsers adds the CA to the user's browsers' NSS databases: with
// --browsers, or on a rerun of a join that had it. Nothing here fails the
// join: browsers are not on Docker's path, so a problem is a warning that
// says how to finish.
func (j *joinRun) browsers(ctx context.Context) error {
	e := j.e
	if !j.o.Browsers && e.Browsers == nil {
		return nil
	}
	if j.GOOS != "linux" {
		j.emit(StepTrust, "browsers", StatusSkipped, "browsers on "+j.GOOS+" use the OS trust store, which holds the CA now (Firefox: set security.enterprise_roots.enabled)")
		return nil
	}
	if e.Browsers == nil {
		e.Browsers = &BrowsersRecord{Name: TrustName(e.Registry), Added: []string{}}
		if err := j.save(); err != nil {
			return err
		}
	}
	r := e.Browsers
	dbs, err := j.Browsers.Find()
	if err != nil {
		j.emit(StepTrust, "browsers", StatusWarning, err.Error())
		return nil
	}
	if len(dbs) == 0 {
		j.emit(StepTrust, "browsers", StatusSkipped, fmt.Sprintf("no browser NSS database in %s (Chromium's .pki/nssdb, Firefox profiles): start the browser once, then run join --browsers again", j.User.Home))
		return nil
	}
	pem := []byte(e.CAPEM)
	for _, db := range dbs {
		ours := slices.Contains(r.Added, db)
		if !ours {
			in, err := j.Browsers.Installed(ctx, db, r.Name, pem)
			if err != nil {
				j.browserWarning(db, err)
				continue
			}
			if in && !slices.Contains(r.Pending, db) {
				j.emit(StepTrust, "browsers", StatusUnchanged, "unchanged: "+db+" already trusts the CA (left as it is by leave)")
				continue
			}
			if !in {
				r.Pending = appendNew(r.Pending, db)
				if err := j.save(); err != nil {
					return err
				}
			}
		}
		changed, err := j.Browsers.Install(ctx, db, r.Name, pem)
		if err != nil {
			j.browserWarning(db, err)
			continue
		}
		r.Added = appendNew(r.Added, db)
		r.Pending = slices.DeleteFunc(r.Pending, func(p string) bool { return p == db })
		if err := j.save(); err != nil {
			return err
		}
		if changed {
			j.emit(StepTrust, "browsers", StatusChanged, fmt.Sprintf("added the CA as %q to %s (certutil)", r.Name, db))
		} else {
			j.emit(StepTrust, "browsers", StatusUnchanged, "unchanged: "+db+" holds the CA")
		}
	}
	return nil
}

func (j *joinRun) browserWarning(db string, err error) {
	if errors.Is(err, trust.ErrToolMissing) {
		j.emit(StepTrust, "browsers", StatusWarning, "certutil is not installed, so browsers do not trust the device yet: "+certutilInstallFix+", then run join --browsers again")
		return
	}
	j.emit(StepTrust, "browsers", StatusWarning, fmt.Sprintf("%s: %v", db, err))
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// undoBrowsers removes the CA from the NSS databases join added it to
// (Uninstall removes only the certificate that is the CA). A database it
// cannot change stays recorded for the next leave.
func (s *System) undoBrowsers(ctx context.Context, e *Entry, rep *reporter, step string, done Status) error {
	r := e.Browsers
	if r == nil {
		return nil
	}
	var errs []error
	var kept []string
	for _, db := range append(slices.Clone(r.Added), r.Pending...) {
		changed, err := s.Browsers.Uninstall(ctx, db, r.Name, []byte(e.CAPEM))
		if err != nil {
			errs = append(errs, err)
			kept = appendNew(kept, db)
			continue
		}
		if changed {
			rep.emit(step, "browsers", done, fmt.Sprintf("removed the CA %q from %s", r.Name, db))
		}
	}
	if len(kept) > 0 {
		r.Added, r.Pending = kept, nil
		return errors.Join(errs...)
	}
	e.Browsers = nil
	return nil
}

// checkBrowsers: each NSS database join added the CA to still holds it.
func (s *System) checkBrowsers(ctx context.Context, e *Entry) []Check {
	r := e.Browsers
	if r == nil || len(r.Added) == 0 {
		return nil
	}
	var missing, holding []string
	for _, db := range r.Added {
		in, err := s.Browsers.Installed(ctx, db, r.Name, []byte(e.CAPEM))
		switch {
		case errors.Is(err, trust.ErrToolMissing):
			return []Check{broken(CheckBrowsers, "certutil is not installed: cannot read the browsers' NSS databases", certutilInstallFix)}
		case err != nil:
			missing = append(missing, fmt.Sprintf("%s (%v)", db, err))
		case !in:
			missing = append(missing, db)
		default:
			holding = append(holding, db)
		}
	}
	if len(missing) > 0 {
		return []Check{broken(CheckBrowsers, "the CA is missing from "+strings.Join(missing, ", "),
			strings.Replace(rejoinFix(e), "` again", " --browsers` again", 1))}
	}
	return []Check{ok(CheckBrowsers, fmt.Sprintf("%d NSS database(s) hold the CA as %q: %s", len(holding), r.Name, strings.Join(holding, ", ")))}
}

// planBrowsers says what join --browsers would run.
func (s *System) planBrowsers(registry string, plan, warn func(step, item, format string, args ...any)) {
	if s.GOOS != "linux" {
		plan(StepTrust, "browsers", "nothing: browsers on %s use the OS trust store", s.GOOS)
		return
	}
	dbs, err := s.Browsers.Find()
	switch {
	case err != nil:
		warn(StepTrust, "browsers", "%v", err)
	case len(dbs) == 0:
		warn(StepTrust, "browsers", "no browser NSS database in %s: start the browser once first", s.User.Home)
	}
	for _, db := range dbs {
		plan(StepTrust, "browsers", "run certutil -A -d sql:%s -t %s -n %s -i <the CA>", db, trust.NSSTrustFlags, TrustName(registry))
	}
}
