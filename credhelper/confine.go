package credhelper

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrUnsafePath is wrapped when a store or config.json written for another
// user (WithOwner) would be reached through something that user does not
// control alone: a symbolic link out of their home, a path outside it, or a
// file or directory owned by someone else.
var ErrUnsafePath = errors.New("not a path root may write for the user")

// CheckPath reports whether a Store or RegisterFile with opts could use
// path: with WithOwner, that it is confined to the user's home (see
// WithOwner); otherwise that its symbolic links resolve. It reads only, so
// that a caller refuses before it spends anything.
func CheckPath(path string, opts ...Option) error {
	_, err := newOptions(opts).resolve(path)
	return err
}

// resolve returns the file a read or write of path must use: path with its
// final symbolic links followed (resolveSymlinks), or, when the files are
// another user's, the path resolveConfined allows.
func (o options) resolve(path string) (string, error) {
	if o.owner == nil {
		return resolveSymlinks(path)
	}
	return resolveConfined(path, o.home, o.owner.UID)
}

// resolveConfined resolves path, component by component below home, for
// root acting on behalf of uid: it follows symbolic links only while they
// stay in home, and refuses any component (directory, link or the file)
// owned by someone other than uid or root, so that whatever it returns is
// a place the user could write themselves. Parts of the path that do not
// exist yet are returned as they are: they are created below a directory
// that passed. home may be given through a link (its resolved spelling is
// accepted too).
func resolveConfined(path, home string, uid int) (string, error) {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("refusing to write %s as root for uid %d: %s: %w", path, uid, fmt.Sprintf(format, args...), ErrUnsafePath)
	}
	if home == "" || !filepath.IsAbs(home) {
		return "", refuse("no home directory to keep it in")
	}
	homes := []string{filepath.Clean(home)}
	if real, err := filepath.EvalSymlinks(home); err == nil && real != homes[0] {
		homes = append(homes, real)
	}
	base, rel, ok := below(homes, path)
	if !ok {
		return "", refuse("it is outside the user's home directory %s", home)
	}
	cur, rest := base, splitPath(rel)
	via := "" // the last link followed, for the message
	for hops := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if cur == base {
				if via != "" {
					return "", refuse("%s leads outside the user's home directory %s", via, home)
				}
				return "", refuse("it leads outside the user's home directory %s", home)
			}
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) {
			if slices.Contains(rest, "..") {
				return "", refuse("%s does not exist and the path climbs back out of it", next)
			}
			return filepath.Join(append([]string{next}, rest...)...), nil
		}
		if err != nil {
			return "", fmt.Errorf("resolving %s: %w", path, err)
		}
		if owner, ok := fileOwner(fi); ok && owner != uid && owner != 0 {
			return "", refuse("%s is owned by uid %d, not by the user or root", next, owner)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if hops++; hops > maxSymlinks {
				return "", fmt.Errorf("resolving %s: too many levels of symbolic links", path)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", fmt.Errorf("resolving %s: %w", path, err)
			}
			via = fmt.Sprintf("the symbolic link %s (to %s)", next, target)
			if filepath.IsAbs(target) {
				tbase, trel, ok := below(homes, target)
				if !ok {
					return "", refuse("%s is a symbolic link to %s, outside the user's home directory %s", next, target, home)
				}
				cur, base = tbase, tbase
				rest = append(splitPath(trel), rest...)
			} else {
				// Relative to the link's directory; a ".." out of the
				// home is refused above.
				rest = append(splitPath(target), rest...)
			}
			continue
		}
		if len(rest) > 0 && !fi.IsDir() {
			return "", fmt.Errorf("resolving %s: %s is not a directory", path, next)
		}
		cur = next
	}
	return cur, nil
}

// below finds the home (of homes) that p lies in, and p relative to it.
func below(homes []string, p string) (home, rel string, ok bool) {
	p = filepath.Clean(p)
	for _, h := range homes {
		if p == h {
			return h, "", true
		}
		prefix := h
		if !strings.HasSuffix(prefix, string(filepath.Separator)) {
			prefix += string(filepath.Separator)
		}
		if strings.HasPrefix(p, prefix) {
			return h, p[len(prefix):], true
		}
	}
	return "", "", false
}

func splitPath(rel string) []string {
	if rel == "" {
		return nil
	}
	return strings.Split(filepath.ToSlash(rel), "/")
}
