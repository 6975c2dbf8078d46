package gateway

import (
	"bytes"
	"io"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"
)

// truncatedForms are multipart bodies that stop before their closing delimiter. mime/multipart reports
// the end of the parts at EOF in several of these places, so before a body cut inside a later part's
// headers was answered 200 with the parts before the cut.
func truncatedForms() map[string]string {
	const head = "--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nsegment cat\r\n"
	const url = "--B\r\nContent-Disposition: form-data; name=\"image_url\"\r\n\r\nhttp://h/i.png\r\n"
	return map[string]string{
		"inside a later part's headers": head + url + "--B\r\nContent-Disposition: form-da",
		"after a later part's headers":  head + url + "--B\r\nContent-Disposition: form-data; name=\"model_id\"\r\n",
		"right after a delimiter line":  head + url + "--B\r\n",
		"right after a delimiter":       head + url + "--B",
		"after the last part's data":    head + url,
		"inside a part's data":          head + "--B\r\nContent-Disposition: form-data; name=\"image_url\"\r\n\r\nhttp://h/i",
		"inside a file's data": head + "--B\r\nContent-Disposition: form-data; name=\"image_file\"; filename=\"a.png\"\r\n" +
			"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n half an image",
		"inside the first part's headers": "--B\r\nContent-Disposition: form-data; na",
		"in the preamble":                 "this is no multipart body",
		"a closing delimiter inside data": head + "--B\r\nContent-Disposition: form-data; name=\"image_url\"\r\n\r\nhttp://h/i.png--B--",
	}
}

func TestTruncatedMultipartIs400(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.resp = sampleResponse()
	for name, body := range truncatedForms() {
		r := e.send("multipart/form-data; boundary=B", []byte(body))
		if r.code != 400 || !strings.HasPrefix(string(r.body), `{"status":"error","detail":"Invalid form body`) {
			t.Errorf("%s: %d %s", name, r.code, r.body)
		}
	}
	e.fake.mu.Lock()
	called := e.fake.lastReq != nil
	e.fake.mu.Unlock()
	if called {
		t.Fatal("the server was called for a truncated body")
	}
	// Complete bodies: closing delimiter with or without CRLF and epilogue, an empty form.
	const full = "--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nsegment cat\r\n" +
		"--B\r\nContent-Disposition: form-data; name=\"image_url\"\r\n\r\nhttp://h/i.png\r\n--B--"
	for _, body := range []string{full, full + "\r\n", full + "\r\nepilogue --B-- ignored"} {
		if r := e.send("multipart/form-data; boundary=B", []byte(body)); r.code != 200 {
			t.Errorf("complete body %q: %d %s", body[len(body)-12:], r.code, r.body)
		}
	}
	if r := e.send("multipart/form-data; boundary=B", []byte("--B--\r\n")); r.code != 400 ||
		string(r.body) != errJSON("Missing required form field: prompt") {
		t.Errorf("empty form: %d %s", r.code, r.body)
	}
	// A real client's body (mime/multipart's writer), split anywhere between reads.
	ct, body := multipartBody(t, map[string]string{"prompt": "p"}, []byte("img"))
	if r := e.send(ct, body.Bytes()); r.code != 200 {
		t.Errorf("client body: %d %s", r.code, r.body)
	}
}

// The watch sees a closing delimiter split across reads, at the very start of the body, and nowhere else.
func TestClosingWatch(t *testing.T) {
	for body, want := range map[string]bool{
		"--B--":                       true,
		"x\r\n--B--\r\n":              true,
		"x\n--B--":                    true,
		"x--B--":                      false,
		"x\r\n--B\r\n":                false,
		"x\r\n--BB--":                 false,
		"pre\r\n--B\r\n\r\nv\r\n--B-": false,
	} {
		for _, one := range []bool{false, true} {
			var r io.Reader = strings.NewReader(body)
			if one {
				r = iotest.OneByteReader(r)
			}
			w := newClosingWatch(r, "B")
			if _, err := io.Copy(io.Discard, w); err != nil {
				t.Fatal(err)
			}
			if w.seen() != want {
				t.Errorf("%q (one byte per read %v): seen %v", body, one, w.seen())
			}
		}
	}
	big := append(bytes.Repeat([]byte("x"), 100000), "\r\n--boundary-0123456789--"...)
	w := newClosingWatch(iotest.HalfReader(bytes.NewReader(big)), "boundary-0123456789")
	_, _ = io.Copy(io.Discard, w)
	if !w.seen() {
		t.Error("delimiter at the end of a large body missed")
	}
}

// blankRunes: Unicode White_Space and the invisible format characters the server also counts as blank.
var blankRunes = []string{"\t", "\n", "\v", "\f", "\r", " ", "\u0085", "\u00a0", "\u1680", "\u2000", "\u2005",
	"\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u180e", "\u200b", "\u200c", "\u200d", "\u2060",
	"\ufeff"}

// A prompt of only blank characters asks for nothing: 400 with the server's own message for a blank
// prompt (before, \v, \f, NBSP, U+3000, ZWSP or a BOM passed as a prompt), without calling the server.
func TestBlankPromptsRefused(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.resp = sampleResponse()
	for _, r := range blankRunes {
		for _, p := range []string{r, r + r + " " + r} {
			bothEncodings(t, e, "prompt "+url.QueryEscape(p), [][2]string{{"prompt", p}, {"image_url", "http://h/i.png"}},
				400, msgBlankPrompt)
		}
	}
	e.fake.mu.Lock()
	called := e.fake.lastReq != nil
	e.fake.mu.Unlock()
	if called {
		t.Fatal("the server was called for a blank prompt")
	}
	// A blank character next to a word is a prompt.
	for _, p := range []string{"\u00a0segment cat", "segment\u3000cat", "\ufeffsegment cat", "\u200b猫"} {
		bothEncodings(t, e, "prompt "+url.QueryEscape(p), [][2]string{{"prompt", p}, {"image_url", "http://h/i.png"}}, 200, "")
		if got := e.fake.lastReq.GetPrompt(); got != p {
			t.Errorf("prompt sent as %q, want %q", got, p)
		}
	}
	for _, s := range []string{"a", "\u00ad", "\u034f", "\u115f"} {
		if isBlank(s) {
			t.Errorf("%q counted as blank", s)
		}
	}
}
