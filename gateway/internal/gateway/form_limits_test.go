package gateway

// Issue 7's limits on the form endpoint (POST /segment) over the wire: number of fields, size of each
// text field, duplicate and unknown fields, non-UTF-8 text, header size and malformed bodies. Every
// answer is a 4xx with the JSON error shape (or net/http's own 431 for oversized headers), never a 500
// and never a hang: each request has a client timeout.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// limitClient bounds every request: a hang fails the test instead of blocking it.
var limitClient = &http.Client{Timeout: 30 * time.Second}

func (e *env) send(contentType string, body []byte) result {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/segment", bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := limitClient.Do(req)
	if err != nil {
		e.t.Fatalf("request failed (hang or reset?): %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, b, resp.Header}
}

// orderedMultipart writes the fields in order, duplicates allowed.
func orderedMultipart(fields [][2]string, withFile bool) (string, []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		_ = mw.WriteField(f[0], f[1])
	}
	if withFile {
		fw, _ := mw.CreateFormFile("image_file", "cat.png")
		_, _ = fw.Write([]byte("\x89PNG fake"))
	}
	_ = mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

func urlencoded(fields [][2]string) []byte {
	parts := make([]string, 0, len(fields))
	for _, f := range fields {
		parts = append(parts, url.QueryEscape(f[0])+"="+url.QueryEscape(f[1]))
	}
	return []byte(strings.Join(parts, "&"))
}

// bothEncodings sends the fields as multipart and as urlencoded and checks each answer.
func bothEncodings(t *testing.T, e *env, name string, fields [][2]string, code int, detail string) {
	t.Helper()
	ct, body := orderedMultipart(fields, false)
	for _, c := range []struct {
		enc, ct string
		body    []byte
	}{{"multipart", ct, body}, {"urlencoded", "application/x-www-form-urlencoded", urlencoded(fields)}} {
		r := e.send(c.ct, c.body)
		if r.code != code || (detail != "" && string(r.body) != errJSON(detail)) {
			t.Errorf("%s (%s): %d %s, want %d %s", name, c.enc, r.code, r.body, code, detail)
		}
		if r.code != 200 && r.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s (%s): error is not JSON: %q", name, c.enc, r.header.Get("Content-Type"))
		}
	}
}

func baseFields(extra ...[2]string) [][2]string {
	return append([][2]string{{"prompt", "segment cat"}, {"image_url", "http://example.com/cat.png"}}, extra...)
}

func TestFormFieldCountLimit(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.resp = sampleResponse()
	fields := baseFields()
	for i := len(fields); i < maxFormFields; i++ {
		fields = append(fields, [2]string{fmt.Sprintf("extra%d", i), "x"})
	}
	bothEncodings(t, e, "exactly the limit", fields, 200, "")
	fields = append(fields, [2]string{"one_more", "x"})
	bothEncodings(t, e, "one over", fields, 400, fmt.Sprintf("Too many form fields (the limit is %d).", maxFormFields))
	// Many nameless parts (skipped, but counted): refused at the limit, not parsed to the end of the body.
	many := baseFields()
	for i := 0; i < 2000; i++ {
		many = append(many, [2]string{"", ""})
	}
	start := time.Now()
	bothEncodings(t, e, "2000 nameless fields", many, 400, fmt.Sprintf("Too many form fields (the limit is %d).", maxFormFields))
	t.Logf("[measure] 2000-field bodies answered in %v", time.Since(start))
}

func TestFormFieldSizeLimit(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.resp = sampleResponse()
	exact := strings.Repeat("p", maxFormFieldBytes)
	bothEncodings(t, e, "prompt at the limit", [][2]string{{"prompt", exact}, {"image_url", "http://x/y.png"}}, 200, "")
	if got := e.fake.lastReq.GetPrompt(); got != exact {
		t.Errorf("prompt at the limit forwarded as %d bytes", len(got))
	}
	over := exact + "p"
	want := fmt.Sprintf("Form field %%s is too large (the limit is %d bytes).", maxFormFieldBytes)
	for _, name := range []string{"prompt", "image_url", "options", "model_id", "unknown_field"} {
		fields := baseFields()
		switch name {
		case "prompt":
			fields[0][1] = over
		case "image_url":
			fields[1][1] = over
		default:
			fields = append(fields, [2]string{name, over})
		}
		bothEncodings(t, e, name+" over the limit", fields, 413, fmt.Sprintf(want, name))
	}
	// The file is not a text field: a file larger than the text limit is fine (the body cap bounds it).
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("prompt", "segment cat")
	fw, _ := mw.CreateFormFile("image_file", "big.png")
	_, _ = fw.Write(bytes.Repeat([]byte{0x89}, 4*maxFormFieldBytes))
	_ = mw.Close()
	if r := e.send(mw.FormDataContentType(), buf.Bytes()); r.code != 200 {
		t.Errorf("file over the text limit: %d %s", r.code, r.body)
	}
	if n := len(e.fake.lastReq.GetImageData()); n != 4*maxFormFieldBytes {
		t.Errorf("file forwarded with %d bytes", n)
	}
}

func TestFormDuplicateAndUnknownFields(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.resp = sampleResponse()
	for _, name := range []string{"prompt", "image_url", "model_id", "max_new_tokens", "include_image",
		"include_full_masks", "options"} {
		v := map[string]string{"max_new_tokens": "5", "include_image": "true", "include_full_masks": "false",
			"options": "{}", "model_id": "tiny"}[name]
		if v == "" {
			v = "a"
		}
		fields := baseFields([2]string{name, v}, [2]string{name, v})
		if name == "prompt" || name == "image_url" {
			fields = baseFields([2]string{name, "second"})
		}
		bothEncodings(t, e, "duplicate "+name, fields, 400, fmt.Sprintf("Send one %s field, not several.", name))
	}
	// Unknown fields, even repeated, are ignored (FastAPI ignores them too) and not forwarded.
	bothEncodings(t, e, "unknown", baseFields([2]string{"submit", "Go"}, [2]string{"submit", "Again"},
		[2]string{"image_file_extra", "x"}), 200, "")
	if e.fake.lastReq.GetPrompt() != "segment cat" || e.fake.lastReq.GetImageUrl() != "http://example.com/cat.png" {
		t.Errorf("forwarded %v", e.fake.lastReq)
	}
	// Two files stay refused.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("prompt", "p")
	for i := 0; i < 2; i++ {
		fw, _ := mw.CreateFormFile("image_file", "a.png")
		_, _ = fw.Write([]byte("img"))
	}
	_ = mw.Close()
	if r := e.send(mw.FormDataContentType(), buf.Bytes()); r.code != 400 || string(r.body) != errJSON("Send one image_file, not several.") {
		t.Errorf("two files: %d %s", r.code, r.body)
	}
}

func TestFormTextMustBeUTF8(t *testing.T) {
	// Without the check, invalid UTF-8 reached proto marshalling and came back as a 500.
	e := newEnv(t, nil)
	e.fake.resp = sampleResponse()
	for _, name := range []string{"prompt", "image_url", "model_id"} {
		fields := baseFields()
		for i := range fields {
			if fields[i][0] == name {
				fields[i][1] = "segment \xff\xfe cat"
			}
		}
		if name == "model_id" {
			fields = append(fields, [2]string{name, "tiny\xc3"})
		}
		bothEncodings(t, e, "non-UTF-8 "+name, fields, 400, fmt.Sprintf("Form field %s is not valid UTF-8 text.", name))
	}
	// Valid multi-byte text passes untouched.
	bothEncodings(t, e, "UTF-8", baseFields([2]string{"model_id", "tiny"}), 200, "")
	utf := [][2]string{{"prompt", "segment le chat noir \u00e9\u4e2d\U0001F408"}, {"image_url", "http://x/y.png"}}
	bothEncodings(t, e, "UTF-8 prompt", utf, 200, "")
	if e.fake.lastReq.GetPrompt() != utf[0][1] {
		t.Errorf("prompt forwarded as %q", e.fake.lastReq.GetPrompt())
	}
}

func TestFormMalformedBodiesAre4xx(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.resp = sampleResponse()
	ct, good := orderedMultipart(baseFields(), false)
	boundary := strings.TrimPrefix(ct, "multipart/form-data; boundary=")
	cases := []struct {
		name, ct string
		body     []byte
		code     int
	}{
		{"truncated mid-part", ct, good[:len(good)/2], 400},
		{"no closing boundary", ct, bytes.TrimSuffix(bytes.TrimSpace(good), []byte("--")), 400},
		{"wrong boundary", "multipart/form-data; boundary=nope", good, 400},
		{"no boundary", "multipart/form-data", good, 400},
		{"bad content type", "multipart/form-data; boundary=\"", good, 400},
		{"garbage", ct, []byte("\x00\x01\x02 not multipart at all"), 400},
		{"part header without end", ct, []byte("--" + boundary + "\r\nContent-Disposition: form-data; name=\"prompt\"" +
			strings.Repeat("x", 100000)), 400},
		{"huge part header", ct, []byte("--" + boundary + "\r\nContent-Disposition: form-data; name=\"prompt\"\r\nX-Pad: " +
			strings.Repeat("x", 2<<20) + "\r\n\r\nsegment cat\r\n--" + boundary + "--\r\n"), 400},
		{"bad urlencoded escape", "application/x-www-form-urlencoded", []byte("prompt=%zz&image_url=x"), 400},
		{"text/plain", "text/plain", []byte("prompt=x"), 415},
	}
	for _, c := range cases {
		r := e.send(c.ct, c.body)
		if r.code != c.code || !bytes.HasPrefix(r.body, []byte(`{"status":"error","detail":`)) {
			t.Errorf("%s: %d %s", c.name, r.code, r.body)
		}
	}
}

func TestOversizedHeadersRefusedNot500(t *testing.T) {
	// main.go's http.Server leaves MaxHeaderBytes at net/http's default (1 MiB), as httptest does:
	// oversized headers get net/http's own 431 before any handler runs.
	e := newEnv(t, nil)
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/segment", strings.NewReader("prompt=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Pad", strings.Repeat("x", 2<<20))
	resp, err := limitClient.Do(req)
	if err != nil {
		t.Fatalf("oversized header: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized header: %d", resp.StatusCode)
	}
	// Many headers within the size: the request itself is answered normally.
	req, _ = http.NewRequest(http.MethodPost, e.http.URL+"/segment", strings.NewReader("prompt=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i < 1000; i++ {
		req.Header.Add(fmt.Sprintf("X-H%d", i), "v")
	}
	resp2, err := limitClient.Do(req)
	if err != nil {
		t.Fatalf("many headers: %v", err)
	}
	defer resp2.Body.Close()
	if resp2.StatusCode != 400 {
		t.Errorf("many headers: %d", resp2.StatusCode)
	}
}

// A client that stops sending halfway through its body gets a 408 JSON answer once the request timeout
// passes, instead of holding a handler forever (the context alone does not interrupt a body read).
func TestStalledBodyTimesOut(t *testing.T) {
	for _, ct := range []string{"multipart/form-data; boundary=XYZ", "application/x-www-form-urlencoded", "application/json"} {
		e := newEnv(t, func(c *Config) { c.RequestTimeout = 700 * time.Millisecond })
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.http.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close() // before the server's cleanup, which waits for its handlers
		start := time.Now()
		// JSON goes to /v1/segment, where the decoder's error names the sockets: the answer must not.
		path := "/segment"
		if ct == "application/json" {
			path = "/v1/segment"
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: 1000\r\n\r\n", path, ct)
		fmt.Fprint(conn, "--XYZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nsegm")
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: no answer to a stalled body (hang?): %v", ct, err)
		}
		body, _ := io.ReadAll(resp.Body)
		t.Logf("%s: %d after %v: %s", ct, resp.StatusCode, time.Since(start).Round(time.Millisecond), body)
		if resp.StatusCode != http.StatusRequestTimeout ||
			string(body) != errJSON("The request body did not arrive within the request timeout.") {
			t.Fatalf("%s: want 408 JSON, got %d %s", ct, resp.StatusCode, body)
		}
		e.fake.mu.Lock()
		called := e.fake.lastReq != nil
		e.fake.mu.Unlock()
		if called {
			t.Fatalf("%s: the server was called for an incomplete body", ct)
		}
	}
}
