package gateway

import (
	"bytes"
	"io"
	"unicode"
)

// isBlank: every rune of s is Unicode White_Space or one of the invisible format characters people paste
// (MONGOLIAN VOWEL SEPARATOR, ZERO WIDTH SPACE/NON-JOINER/JOINER, WORD JOINER, BOM). A prompt of only
// those asks for nothing. The server's request validation uses the same set.
func isBlank(s string) bool {
	for _, r := range s {
		switch {
		case unicode.Is(unicode.White_Space, r):
		case r == 0x180E, r >= 0x200B && r <= 0x200D, r == 0x2060, r == 0xFEFF:
		default:
			return false
		}
	}
	return true
}

// closingWatch passes a multipart body through and notes whether its closing delimiter ("--boundary--"
// at the start of the body or of a line) went by. mime/multipart reads ahead, so by the time it reports
// the end of the parts the delimiter, when there was one, has been read.
type closingWatch struct {
	r     io.Reader
	delim []byte // "\n--boundary--"
	tail  []byte // the last len(delim)-1 bytes read, for a delimiter split across reads
	found bool
}

func newClosingWatch(r io.Reader, boundary string) *closingWatch {
	// The tail starts as "\n": a delimiter at the very start of the body counts as at a line start.
	return &closingWatch{r: r, delim: []byte("\n--" + boundary + "--"), tail: []byte("\n")}
}

func (c *closingWatch) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n == 0 || c.found {
		return n, err
	}
	chunk, keep := p[:n], len(c.delim)-1
	// Across the previous read and this one, then inside this one.
	seam := append(c.tail, chunk[:min(len(chunk), keep)]...)
	if bytes.Contains(seam, c.delim) || bytes.Contains(chunk, c.delim) {
		c.found = true
		return n, err
	}
	if len(chunk) >= keep {
		c.tail = append(c.tail[:0], chunk[len(chunk)-keep:]...)
	} else {
		c.tail = append(c.tail, chunk...)
		if len(c.tail) > keep {
			c.tail = append(c.tail[:0], c.tail[len(c.tail)-keep:]...)
		}
	}
	return n, err
}

func (c *closingWatch) seen() bool { return c.found }
