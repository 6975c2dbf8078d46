package gateway

// Fuzz tests of the form endpoint (POST /segment), the gateway's hand-written parsing of untrusted
// bodies. Run one at a time (go test allows one -fuzz target per invocation):
//
//	go test ./internal/gateway -run '^$' -fuzz '^FuzzReadForm$' -fuzztime 30s
//	go test ./internal/gateway -run '^$' -fuzz '^FuzzSegmentForm$' -fuzztime 30s
//
// Without -fuzz, `go test` runs the seeds below and every input saved under testdata/fuzz/ as
// ordinary tests (the regression inputs of crashes found so far).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "github.com/paligemma-serve/paligemma-serve/gateway/gen/paligemma/v1"
)

// fuzzMultipartBody builds a well-formed multipart/form-data body (the seeds, and FuzzSegmentForm's input).
func fuzzMultipartBody(fields map[string]string, fileName string, file []byte, withFile bool) (string, []byte) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for _, k := range []string{"prompt", "image_url", "model_id", "max_new_tokens", "include_image",
		"include_full_masks", "options"} {
		if v, ok := fields[k]; ok {
			_ = w.WriteField(k, v)
		}
	}
	if withFile {
		fw, _ := w.CreateFormFile("image_file", fileName)
		_, _ = fw.Write(file)
	}
	_ = w.Close()
	return w.FormDataContentType(), b.Bytes()
}

// checkFormOutcome is what must hold for any body: an error is an *httpError with a 4xx the endpoint
// documents, a request that validates has a prompt and at most one image source.
func checkFormOutcome(t *testing.T, req *pb.SegmentRequest, err error) {
	t.Helper()
	if err != nil {
		var he *httpError
		if !errors.As(err, &he) {
			t.Fatalf("error is not an httpError: %T %v", err, err)
		}
		switch he.code {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		default:
			t.Fatalf("unexpected status %d: %s", he.code, he.detail)
		}
		return
	}
	if isBlank(req.GetPrompt()) {
		t.Fatal("request without a prompt (or a blank one) passed form validation")
	}
	if len(req.GetImageData()) > 0 && req.GetImageUrl() != "" {
		t.Fatal("request with both image_data and image_url passed form validation")
	}
	if req.GetOptions() == nil || req.GetOptions().IncludeFullMasks == nil {
		t.Fatal("form request without include_full_masks (the form endpoint defaults it to false)")
	}
}

// FuzzReadForm: readForm + toSegmentRequest on an arbitrary Content-Type and body, under the body cap.
func FuzzReadForm(f *testing.F) {
	ct, body := fuzzMultipartBody(map[string]string{"prompt": "segment cat", "max_new_tokens": "12",
		"include_image": "false", "options": `{"include_full_masks":true}`}, "a.jpg", []byte("\xff\xd8\xff"), true)
	f.Add(ct, body)
	ct, body = fuzzMultipartBody(map[string]string{"prompt": "p", "image_url": "http://x/"}, "", nil, true)
	f.Add(ct, body)
	f.Add("application/x-www-form-urlencoded", []byte("prompt=segment+wheel&image_url=http%3A%2F%2Fx%2Fa.png&max_new_tokens=%2012%20"))
	f.Add("application/x-www-form-urlencoded", []byte("prompt=%zz&image_file=abc"))
	f.Add("multipart/form-data; boundary=XX", []byte("--XX\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nhi\r\n--XX--\r\n"))
	f.Add("multipart/form-data", []byte("--"))
	f.Add("text/plain; charset=\"", []byte("x"))
	f.Add("", []byte("prompt=x"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/segment", bytes.NewReader(body))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		// The limit middleware's cap, small so that the 413 path is reached.
		r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 4096)
		fields, err := readForm(r, 4096)
		var req *pb.SegmentRequest
		if err == nil {
			if fields == nil {
				t.Fatal("readForm returned neither fields nor an error")
			}
			req, err = toSegmentRequest(fields)
		}
		checkFormOutcome(t, req, err)
	})
}

// recordingConn is an in-process grpc.ClientConnInterface: Segment answers an empty response and
// records what it was sent, so the whole HTTP handler stack runs without a network.
type recordingConn struct {
	mu   sync.Mutex
	last *pb.SegmentRequest
}

func (c *recordingConn) Invoke(_ context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	if method == pb.SegmentService_Segment_FullMethodName {
		c.mu.Lock()
		c.last = proto.Clone(args.(*pb.SegmentRequest)).(*pb.SegmentRequest)
		c.mu.Unlock()
		proto.Reset(reply.(proto.Message))
		return nil
	}
	return errors.New("recordingConn: unexpected method " + method)
}

func (c *recordingConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, errors.New("recordingConn: no streams")
}

// FuzzSegmentForm: well-formed forms with fuzzed field values (multipart or urlencoded) through the
// gateway's full handler (request id, limits, access log, form parsing, error mapping). Every answer
// must be 200 or a documented 4xx with a JSON {"detail": ...} body; a 200 must have sent the server
// exactly the prompt, model and image source of the form.
func FuzzSegmentForm(f *testing.F) {
	f.Add("segment cat", "", "tiny", "12", "true", "", true, "a.jpg", []byte("\xff\xd8\xff"), false)
	f.Add("segment cat", "https://example.com/a.png", "", "", "", `{"include_image":false}`, false, "", []byte(nil), true)
	f.Add("", "http://x/", "google/paligemma2-3b-mix-448", "99999999999", "maybe", "{", false, "", []byte(nil), false)
	f.Add("p", "http://x/", "", " 7 ", "1", "null", true, "", []byte(""), false)
	f.Add("\x00\r\n--", "", "", "-1", "", "", true, "\"quoted\r\n.jpg", []byte("--boundary--"), false)
	conn := &recordingConn{}
	cfg := DefaultConfig()
	cfg.MaxBodyBytes = 8192
	gw, err := New(cfg, conn)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, prompt, imageURL, modelID, maxNew, includeImage, options string,
		withFile bool, fileName string, file []byte, urlencoded bool) {
		fields := map[string]string{"prompt": prompt, "image_url": imageURL, "model_id": modelID,
			"max_new_tokens": maxNew, "include_image": includeImage, "options": options}
		var ct string
		var body []byte
		if urlencoded {
			v := url.Values{}
			for k, s := range fields {
				v.Set(k, s)
			}
			ct, body = "application/x-www-form-urlencoded", []byte(v.Encode())
		} else {
			ct, body = fuzzMultipartBody(fields, fileName, file, withFile)
		}
		conn.mu.Lock()
		conn.last = nil
		conn.mu.Unlock()
		r := httptest.NewRequest(http.MethodPost, "/segment", bytes.NewReader(body))
		r.Header.Set("Content-Type", ct)
		w := httptest.NewRecorder()
		gw.ServeHTTP(w, r)

		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("status %d with a non-JSON body %q", w.Code, w.Body.String())
		}
		conn.mu.Lock()
		sent := conn.last
		conn.mu.Unlock()
		switch w.Code {
		case http.StatusOK:
			if sent == nil {
				t.Fatal("200 without a call to the server")
			}
			if sent.GetPrompt() != prompt || sent.GetModelId() != modelID || sent.GetImageUrl() != imageURL {
				t.Fatalf("form fields changed on the way: sent %v", sent)
			}
			if isBlank(prompt) || (imageURL != "" && withFile && !urlencoded && (len(file) > 0 || fileName != "")) {
				t.Fatalf("invalid form accepted: %v", sent)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			if sent != nil {
				t.Fatalf("status %d but the server was called", w.Code)
			}
			if d, ok := out["detail"].(string); !ok || d == "" {
				t.Fatalf("status %d without a detail: %s", w.Code, w.Body.String())
			}
		default:
			t.Fatalf("unexpected status %d: %s", w.Code, w.Body.String())
		}
		if strings.TrimSpace(w.Header().Get("X-Request-Id")) == "" && w.Header().Get("X-Request-ID") == "" {
			t.Fatal("no request id header")
		}
	})
}
