package main

import (
	"fmt"
	"strings"
)

// otherAccountWarning is what join says on Windows when the elevated prompt
// runs as another account than the one at the desktop (an administrator's
// credentials typed into the UAC dialog): Windows has no SUDO_USER, so the
// Docker config and credential go into the elevated account's profile,
// where the desktop user's docker does not look. "" when they are the same
// or either is unknown.
func otherAccountWarning(current, desktop string) string {
	if current == "" || desktop == "" || strings.EqualFold(current, desktop) {
		return ""
	}
	return fmt.Sprintf("this prompt runs as %s, but %s is logged in at this desktop: the Docker config and credential go into %s's profile, "+
		"where %s's docker will not find them; to set up %s, sign in as %s (an administrator) and run join from an elevated prompt there",
		current, desktop, current, desktop, desktop, desktop)
}
