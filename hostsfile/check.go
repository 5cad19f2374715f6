package hostsfile

// CheckHost reports whether Add would accept host as a host name (an error
// wrapping ErrInvalidHost if not), so that a caller can refuse a name
// before it records or writes anything.
func CheckHost(host string) error {
	_, err := canonicalHost(host)
	return err
}
