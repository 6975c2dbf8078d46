package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/paligemma-serve/paligemma-serve/gateway/gen/paligemma/v1"
)

// The reference app's messages, kept word for word.
const (
	msgNoImage   = "Provide either an image file or image URL."
	msgBothImage = "Provide either an image file or image URL, not both."
	// The server's answer for a blank prompt, word for word: the form route answers the same for every
	// blank prompt, whether the server or the gateway sees it first.
	msgBlankPrompt = `prompt is empty (e.g. "segment left wheel")`
)

// Form limits below the body cap: a form has a handful of fields, each a short text except the file.
// Without them a 25 MB body could be a million tiny parts or one 25 MB "prompt" held twice in memory.
const (
	maxFormFields     = 64       // parts of a multipart body, or name=value pairs of a urlencoded one
	maxFormFieldBytes = 64 << 10 // each text field (prompt, image_url, options, ...); image_file is not one
)

// knownFields are the form fields the endpoint reads; each may be sent once. Other names are ignored
// (as FastAPI ignores them) but count towards maxFormFields.
var knownFields = map[string]bool{"prompt": true, "image_url": true, "image_file": true, "model_id": true,
	"max_new_tokens": true, "include_image": true, "include_full_masks": true, "options": true}

// addField records one text field: duplicates of a known field are refused (which one would win is a
// classic parameter-pollution ambiguity: FastAPI keeps the last, many parsers the first), and the text
// must be UTF-8, which gRPC requires of proto strings (invalid bytes would fail only when the request
// is marshalled, as a 500).
func (f *formFields) addField(name, value string) error {
	if !knownFields[name] {
		return nil
	}
	if _, dup := f.values[name]; dup {
		return badRequest("Send one %s field, not several.", name)
	}
	if !utf8.ValidString(value) {
		return badRequest("Form field %s is not valid UTF-8 text.", name)
	}
	f.values[name] = []string{value}
	return nil
}

func fieldTooLarge(name string) error {
	return &httpError{code: http.StatusRequestEntityTooLarge,
		detail: fmt.Sprintf("Form field %s is too large (the limit is %d bytes).", name, maxFormFieldBytes)}
}

func tooManyFields() error {
	return badRequest("Too many form fields (the limit is %d).", maxFormFields)
}

// formFields is what a POST /segment form carried, before validation.
type formFields struct {
	values    url.Values
	imageFile []byte
	hasFile   bool
}

func (f *formFields) get(name string) (string, bool) {
	v, ok := f.values[name]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// readForm reads a multipart/form-data or application/x-www-form-urlencoded body (the reference app
// accepted both, as FastAPI Form/File parameters do). The body is already capped by the limit middleware.
func readForm(r *http.Request, maxMemory int64) (*formFields, error) {
	f := &formFields{values: url.Values{}}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		// No body type: like FastAPI, every field is missing.
		_, _ = io.Copy(io.Discard, r.Body)
		return f, nil
	}
	mediaType, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, badRequest("Invalid Content-Type: %v", err)
	}
	switch mediaType {
	case "application/x-www-form-urlencoded":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, bodyError(err)
		}
		// Counted before parsing: ParseQuery would build every pair first.
		if bytes.Count(body, []byte("&"))+1 > maxFormFields {
			return nil, tooManyFields()
		}
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, badRequest("Invalid form body: %v", err)
		}
		for name, vs := range vals {
			for _, v := range vs {
				if len(v) > maxFormFieldBytes {
					return nil, fieldTooLarge(name)
				}
				if err := f.addField(name, v); err != nil {
					return nil, err
				}
			}
		}
		return f, nil
	case "multipart/form-data":
		boundary := params["boundary"]
		if boundary == "" {
			return nil, badRequest("Invalid form body: multipart boundary missing")
		}
		closing := newClosingWatch(r.Body, boundary)
		f, err := readMultipart(multipart.NewReader(closing, boundary), f)
		if err == nil && !closing.seen() {
			// mime/multipart ends the parts at EOF, also when the body stops inside a part's headers: a
			// body without its closing delimiter is a truncated upload, not a complete form.
			return nil, badRequest("Invalid form body: the multipart body ends before its closing boundary")
		}
		return f, err
	default:
		return nil, &httpError{code: http.StatusUnsupportedMediaType,
			detail: "Unsupported Content-Type " + mediaType +
				"; send multipart/form-data or application/x-www-form-urlencoded (JSON goes to POST /v1/segment)."}
	}
}

func readMultipart(mr *multipart.Reader, f *formFields) (*formFields, error) {
	for parts := 0; ; parts++ {
		part, err := mr.NextPart()
		if err == io.EOF {
			return f, nil
		}
		if err != nil {
			return nil, bodyError(err)
		}
		if parts >= maxFormFields {
			_ = part.Close()
			return nil, tooManyFields()
		}
		name := part.FormName()
		// The file is bounded by the body cap only; a text field by maxFormFieldBytes (read one byte
		// more to tell "exactly the limit" from "over").
		var src io.Reader = part
		if name != "image_file" {
			src = io.LimitReader(part, maxFormFieldBytes+1)
		}
		data, err := io.ReadAll(src)
		_ = part.Close()
		if err != nil {
			return nil, bodyError(err)
		}
		if name != "image_file" && len(data) > maxFormFieldBytes {
			return nil, fieldTooLarge(name)
		}
		if name == "" {
			continue
		}
		if name == "image_file" {
			// A browser form with no file chosen sends an empty part with an empty filename: no file.
			if part.FileName() == "" && len(data) == 0 {
				continue
			}
			if f.hasFile {
				return nil, badRequest("Send one image_file, not several.")
			}
			f.hasFile = true
			f.imageFile = data
			continue
		}
		if err := f.addField(name, string(data)); err != nil {
			return nil, err
		}
	}
}

// bodyError: a body over the cap is 413 (the limit middleware records it); a body that could not be read
// is bodyReadFailure's answer; anything else is a bad body.
func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &httpError{code: http.StatusRequestEntityTooLarge, detail: tooLargeDetail(mbe.Limit)}
	}
	if he := bodyReadFailure(err); he != nil {
		return he
	}
	return badRequest("Invalid form body: %v", err)
}

// bodyReadFailure answers a body that did not arrive: 408 when the read deadline (--request_timeout)
// passed, 400 when the connection failed. nil for other errors. A socket error's text names the
// gateway's and the peer's addresses; the client needs neither.
func bodyReadFailure(err error) *httpError {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &httpError{code: http.StatusRequestTimeout, detail: "The request body did not arrive within the request timeout."}
	}
	var netErr *net.OpError
	if errors.As(err, &netErr) {
		return &httpError{code: http.StatusBadRequest, detail: "The request body could not be read."}
	}
	return nil
}

// toSegmentRequest validates the fields the way the reference app did (prompt required, exactly one
// image source) and builds the gRPC request. Our additions: max_new_tokens, include_image,
// include_full_masks and options (a JSON SegmentOptions). The form endpoint leaves full masks out
// unless asked, since the reference app never returned them.
func toSegmentRequest(f *formFields) (*pb.SegmentRequest, error) {
	prompt, _ := f.get("prompt")
	if prompt == "" {
		return nil, badRequest("Missing required form field: prompt")
	}
	if isBlank(prompt) {
		return nil, badRequest(msgBlankPrompt)
	}
	if s, _ := f.get("image_file"); s != "" {
		return nil, badRequest("image_file must be a file upload (multipart/form-data).")
	}
	imageURL, _ := f.get("image_url")
	if !f.hasFile && imageURL == "" {
		return nil, badRequest(msgNoImage)
	}
	if f.hasFile && imageURL != "" {
		return nil, badRequest(msgBothImage)
	}
	req := &pb.SegmentRequest{Prompt: prompt, ImageUrl: imageURL}
	if f.hasFile {
		req.ImageData = f.imageFile
	}
	if m, _ := f.get("model_id"); m != "" {
		req.ModelId = m
	}
	if s, ok := f.get("max_new_tokens"); ok && strings.TrimSpace(s) != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
		if err != nil {
			return nil, badRequest("max_new_tokens must be an integer, got %q", s)
		}
		req.MaxNewTokens = proto.Int32(int32(n))
	}
	opts := &pb.SegmentOptions{}
	if s, ok := f.get("options"); ok && strings.TrimSpace(s) != "" {
		if err := protojson.Unmarshal([]byte(s), opts); err != nil {
			return nil, badRequest("options must be a JSON object with include_image and/or include_full_masks: %v", err)
		}
	}
	for _, b := range []struct {
		name string
		dst  **bool
	}{{"include_image", &opts.IncludeImage}, {"include_full_masks", &opts.IncludeFullMasks}} {
		s, ok := f.get(b.name)
		if !ok || strings.TrimSpace(s) == "" {
			continue
		}
		v, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return nil, badRequest("%s must be true or false, got %q", b.name, s)
		}
		*b.dst = proto.Bool(v)
	}
	if opts.IncludeFullMasks == nil {
		opts.IncludeFullMasks = proto.Bool(false)
	}
	req.Options = opts
	return req, nil
}
