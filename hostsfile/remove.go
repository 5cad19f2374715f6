package hostsfile

// Remove returns content without the blocks of host. Every other line keeps
// its bytes; if content did not end with a line terminator, neither does the
// result (unless its last line is empty), so Remove undoes Add exactly. Content without a block for host is
// returned unchanged. Remove fails when host is invalid ([ErrInvalidHost])
// or the markers do not pair up ([ErrMalformedBlock]).
func Remove(content []byte, host string) ([]byte, error) {
	host, err := canonicalHost(host)
	if err != nil {
		return nil, err
	}
	p, err := parse(content)
	if err != nil {
		return nil, err
	}
	mine := p.blocksOf(host)
	if len(mine) == 0 {
		return content, nil
	}
	return p.rewrite(mine, nil, p.eol(mine)), nil
}
