package agent

import "encoding/base64"

// basicAuth is the value of an Authorization header for HTTP Basic auth.
func basicAuth(username string, password Secret) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(username+":"+password.reveal()))
}
