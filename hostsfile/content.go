package hostsfile

// parsed is the content of a hosts file cut into lines, with its edgecr blocks.
type parsed struct {
	lines  []line
	blocks []block
	open   bool // the content does not end with a line terminator
}

func parse(content []byte) (*parsed, error) {
	lines := splitLines(content)
	blocks, err := findBlocks(lines)
	if err != nil {
		return nil, err
	}
	return &parsed{
		lines:  lines,
		blocks: blocks,
		open:   len(lines) > 0 && lines[len(lines)-1].eol == "",
	}, nil
}

// blocksOf returns the blocks of the canonical host name host.
func (p *parsed) blocksOf(host string) []block {
	var mine []block
	for _, b := range p.blocks {
		if sameHost(b.host, host) {
			mine = append(mine, b)
		}
	}
	return mine
}

// ownedBy marks the lines that belong to one of blocks.
func (p *parsed) ownedBy(blocks []block) []bool {
	owned := make([]bool, len(p.lines))
	for _, b := range blocks {
		for i := b.begin; i <= b.end; i++ {
			owned[i] = true
		}
	}
	return owned
}

// eol returns the line ending for new lines: the one most lines outside
// blocks use. It is computed without those blocks so that rewriting them
// cannot change it: a second Add then writes the same bytes as the first.
// A file with no other line uses the blocks' own ending.
func (p *parsed) eol(blocks []block) string {
	owned := p.ownedBy(blocks)
	var others []line
	for i, l := range p.lines {
		if !owned[i] && l.eol != "" {
			others = append(others, l)
		}
	}
	if len(others) == 0 {
		return dominantEOL(p.lines)
	}
	return dominantEOL(others)
}

// rewrite replaces the first of blocks with repl and drops the others; with
// no blocks, it appends repl.
// While it works, the last line is given the terminator eol, so that lines
// can be appended after it; at the end, if the content had no final
// terminator, the new last line loses its own, whoever it belongs to. That
// keeps whether the file ends with a terminator, and makes a Remove undo an
// Add byte for byte. An empty last line keeps its terminator: without it,
// it would be no line at all.
func (p *parsed) rewrite(blocks []block, repl []line, eol string) []byte {
	lines := make([]line, 0, len(p.lines)+len(repl))
	lines = append(lines, p.lines...)
	if p.open {
		lines[len(lines)-1] = terminate(lines[len(lines)-1], eol)
	}
	out := make([]line, 0, len(lines)+len(repl))
	next := 0
	for i, b := range blocks {
		out = append(out, lines[next:b.begin]...)
		if i == 0 {
			out = append(out, repl...)
		}
		next = b.end + 1
	}
	out = append(out, lines[next:]...)
	if len(blocks) == 0 {
		out = append(out, repl...)
	}
	if p.open && len(out) > 0 && out[len(out)-1].text != "" {
		out[len(out)-1].eol = ""
	}
	return joinLines(out)
}
