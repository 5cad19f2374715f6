package credhelper

// DefaultCredsStore returns the credsStore that Docker's config loader would
// pick for a config that configures no credentials at all (no credsStore,
// no credHelpers, no auths), mirroring the Docker CLI's
// credentials.DetectDefaultStore:
//
//	darwin   osxkeychain, if docker-credential-osxkeychain is on PATH
//	windows  wincred, if docker-credential-wincred is on PATH
//	linux    pass, if pass is on PATH and docker-credential-pass too;
//	         if pass is on PATH but its helper is not, none (Docker does not
//	         fall back to secretservice then);
//	         else secretservice, if docker-credential-secretservice is on PATH
//	other    none
//
// "" means none: Docker then keeps credentials in config.json itself.
// lookPath is exec.LookPath or a fake.
func DefaultCredsStore(goos string, lookPath func(string) (string, error)) string {
	onPath := func(name string) bool {
		_, err := lookPath(name)
		return err == nil
	}
	var store string
	switch goos {
	case "darwin":
		store = "osxkeychain"
	case "windows":
		store = "wincred"
	case "linux":
		store = "secretservice"
		if onPath("pass") {
			store = "pass"
		}
	default:
		return ""
	}
	if !onPath("docker-credential-" + store) {
		return ""
	}
	return store
}
