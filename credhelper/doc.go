// Package credhelper holds the client side of edgecr's credentials: the
// file-backed store behind docker-credential-edgecr, and the edits to
// Docker's config.json that point Docker at that helper for one registry.
//
// Every function that touches the file system takes its path as a
// parameter; the defaults (DefaultPath, DockerConfigDir, DefaultCredsStore)
// are pure functions of what the caller passes in, resolved in cmd/.
package credhelper
