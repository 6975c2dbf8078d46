package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/paligemma-serve/paligemma-serve/gateway/gen/paligemma/v1"
)

// The gateway's marshaler, configured as in New.
func testMarshaler() bodyJSONPb {
	return bodyJSONPb{&runtime.JSONPb{
		MarshalOptions: protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
	}}
}

// checkRequestJSON is the differential check: the fast decoder may decline, but whatever it accepts
// protojson must accept with an equal message, and the gateway's decoder as a whole must give
// protojson's message or protojson's error.
func checkRequestJSON(t *testing.T, body []byte) (fast bool) {
	t.Helper()
	var want pb.SegmentRequest
	wantErr := protojson.Unmarshal(body, &want)

	var got pb.SegmentRequest
	fast = decodeSegmentRequest(body, &got)
	if fast && wantErr != nil {
		t.Fatalf("%q: fast decoder accepted what protojson rejects (%v): %v", body, wantErr, &got)
	}
	if fast && !proto.Equal(&got, &want) {
		t.Fatalf("%q: fast decoder gave %v, protojson %v", body, &got, &want)
	}

	var dec pb.SegmentRequest
	err := testMarshaler().NewDecoder(bytes.NewReader(body)).Decode(&dec)
	if len(bytes.TrimSpace(body)) == 0 {
		if !errors.Is(err, io.EOF) {
			t.Fatalf("%q: empty body gave %v, want io.EOF", body, err)
		}
		return fast
	}
	switch {
	case (err == nil) != (wantErr == nil):
		t.Fatalf("%q: decoder error %v, protojson error %v", body, err, wantErr)
	case err != nil && err.Error() != wantErr.Error():
		t.Fatalf("%q: decoder error %q, protojson error %q", body, err, wantErr)
	case err == nil && !proto.Equal(&dec, &want):
		t.Fatalf("%q: decoder gave %v, protojson %v", body, &dec, &want)
	}
	return fast
}

var (
	img64    = base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\n\xfb\xff\xfe"))
	imgURL64 = base64.URLEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\n\xfb\xff\xfe"))
)

// Shapes clients send; each must take the fast path (else the speed-up silently disappears).
var fastRequestBodies = []string{
	`{}`,
	` {"prompt": "segment cat", "image_data": "` + img64 + `", "max_new_tokens": 32} `,
	`{"prompt":"segment cat","imageData":"` + img64 + `","maxNewTokens":-7,"modelId":"org/tiny","imageUrl":""}`,
	`{"prompt": "p", "image_url": "http://h/i.png", "model_id": "tiny", "options": {"include_image": false, "includeFullMasks": true}}`,
	`{"options": {}, "max_new_tokens": 0}`,
	`{"max_new_tokens": 2147483647}`, `{"max_new_tokens": -2147483648}`, `{"max_new_tokens": -0}`,
	"{\n\t\"prompt\" :\r\n \"a\" ,\"image_data\":\"" + img64 + "\"\n}\n",
	`{"image_data": "` + imgURL64 + `"}`,                             // URL-safe alphabet
	`{"image_data": "` + strings.TrimRight(img64, "=") + `"}`,        // unpadded
	`{"image_data": "` + strings.TrimRight(imgURL64, "=") + `"}`,     // both
	`{"image_data": "` + strings.ReplaceAll(img64, "/", `\/`) + `"}`, // PHP escapes '/'
	`{"image_data": "AA\nEC"}`,                                       // escaped newlines, skipped by base64 as in protojson
	`{"image_data": ""}`, `{"image_data": "AAE"}`, `{"image_data": "AA=="}`,
	`{"prompt": "d\u00e9tecte le chat \ud83d\ude00 \"q\" \\ \/ \b\f\n\r\t \u0000", "model_id": "\u6a21\u578b"}`,
	`{"pro\u006dpt": "a", "image\u005fdata": "AAEC"}`,
	`{"prompt": "détecte 😀 ` + "\u2028\ufffd\x7f" + `"}`,
	`{"prompt": null, "image_data": null, "image_url": null, "model_id": null, "max_new_tokens": null, "options": null}`,
	`{"options": {"include_image": null, "include_full_masks": false}}`,
}

// Bodies protojson rejects or that need its general code; every one goes to protojson.
var slowRequestBodies = []string{
	``, ` `, `null`, `[]`, `"x"`, `{`, `}`, `{"prompt": "a"} x`, `{"prompt": "a"}}`, `{"prompt": "a",}`, `{,}`,
	`{"prompt": 1}`, `{"prompt": "a", "prompt": "b"}`, `{"image_data": "AAEC", "imageData": "AAEC"}`,
	`{"prompt": null, "prompt": "b"}`, `{"nope": 1}`, `{"Prompt": "a"}`, `{"[paligemma.v1.x]": 1}`, `{"@type": "x"}`,
	`{"prompt": "a` + "\n" + `"}`, `{"prompt": "` + "\xff" + `"}`, `{"prompt": "\x"}`, `{"prompt": "\u12"}`,
	`{"prompt": "\ud800"}`, `{"prompt": "\ud800\u0041"}`, `{"prompt": "\udc00\ud800"}`, `{"prompt": "\ud83d\ude0"}`,
	`{"image_data": "AA="}`, `{"image_data": "A"}`, `{"image_data": "AA` + "\n" + `EC"}`,
	`{"image_data": "+-AA"}`, `{"image_data": "AA==AAAA"}`, `{"image_data": "AA AA"}`, `{"image_data": 1}`, `{"image_data": "é"}`,
	`{"max_new_tokens": "7"}`, `{"max_new_tokens": 7.0}`, `{"max_new_tokens": 7e0}`, `{"max_new_tokens": 1.5}`,
	`{"max_new_tokens": 01}`, `{"max_new_tokens": 2147483648}`, `{"max_new_tokens": -2147483649}`, `{"max_new_tokens": 99999999999}`,
	`{"max_new_tokens": -}`, `{"max_new_tokens": 7x}`, `{"max_new_tokens": true}`, `{"max_new_tokens": 1-}`,
	`{"options": {"include_image": 1}}`, `{"options": {"include_image": "true"}}`, `{"options": {"include_image": truex}}`,
	`{"options": {"include_image": true, "includeImage": false}}`, `{"options": []}`, `{"options": {"x": 1}}`,
	`{"prompt": nul}`, `{"prompt": nullx}`, `{"prompt" "a"}`, `{"prompt": "a" "b": 1}`, "\ufeff{}",
}

func TestSegmentRequestJSONMatchesProtojson(t *testing.T) {
	for _, body := range fastRequestBodies {
		if !checkRequestJSON(t, []byte(body)) {
			t.Errorf("%q: fast decoder declined", body)
		}
	}
	for _, body := range slowRequestBodies {
		if checkRequestJSON(t, []byte(body)) && !json.Valid([]byte(body)) {
			t.Errorf("%q: invalid JSON took the fast path", body)
		}
	}
	// A real-sized photo.
	if !checkRequestJSON(t, benchRequestBody(240<<10)) {
		t.Error("photo body declined")
	}
}

// Every JSON and proto name protojson knows for these messages is one the fast decoder handles.
func TestSegmentRequestJSONNames(t *testing.T) {
	values := map[protoreflect.Kind]string{protoreflect.StringKind: `"a"`, protoreflect.BytesKind: `"AAEC"`,
		protoreflect.Int32Kind: `3`, protoreflect.MessageKind: `{}`, protoreflect.BoolKind: `true`}
	var walk func(md protoreflect.MessageDescriptor, wrap func(string) string)
	walk = func(md protoreflect.MessageDescriptor, wrap func(string) string) {
		for i := 0; i < md.Fields().Len(); i++ {
			fd := md.Fields().Get(i)
			v, ok := values[fd.Kind()]
			if !ok {
				t.Fatalf("field %s: no test value for kind %v", fd.FullName(), fd.Kind())
			}
			for _, name := range []string{fd.JSONName(), string(fd.Name())} {
				if body := wrap(`{"` + name + `": ` + v + `}`); !checkRequestJSON(t, []byte(body)) {
					t.Errorf("%s: fast decoder declined", body)
				}
			}
			if fd.Kind() == protoreflect.MessageKind {
				name := fd.JSONName()
				walk(fd.Message(), func(s string) string { return wrap(`{"` + name + `": ` + s + `}`) })
			}
		}
	}
	walk((&pb.SegmentRequest{}).ProtoReflect().Descriptor(), func(s string) string { return s })
}

// Errors reach the client as 400 {"status":"error","detail":...} with protojson's message.
func TestV1SegmentJSONErrorsAndFastPath(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.resp = realisticResponse()
	for _, body := range []string{`{"prompt": "a", "prompt": "b"}`, `{"image_data": "A"}`, `{"max_new_tokens": 1e99}`,
		`{"prompt": "a"} x`} {
		var want pb.SegmentRequest
		perr := protojson.Unmarshal([]byte(body), &want)
		r := e.post("/v1/segment", "application/json", strings.NewReader(body))
		if r.code != 400 || string(r.body) != errJSON(perr.Error()) {
			t.Errorf("%s: %d %s, want 400 %s", body, r.code, r.body, errJSON(perr.Error()))
		}
	}
	body := benchRequestBody(64 << 10)
	var want pb.SegmentRequest
	if err := protojson.Unmarshal(body, &want); err != nil {
		t.Fatal(err)
	}
	r := e.post("/v1/segment", "application/json", bytes.NewReader(body))
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if !proto.Equal(e.fake.lastReq, &want) {
		t.Fatalf("backend got a different request")
	}
	var resp pb.SegmentResponse
	if err := protojson.Unmarshal(r.body, &resp); err != nil || !proto.Equal(&resp, e.fake.resp) {
		t.Fatalf("response does not decode to what the backend sent: %v", err)
	}
}

func TestReadBodyUsesContentLength(t *testing.T) {
	body := benchRequestBody(1 << 20)
	for _, size := range []int64{-1, 0, 100, 1 << 20, int64(len(body)) - 1, int64(len(body)), int64(len(body)) + 7} {
		got, err := readBody(&cappedBody{ReadCloser: io.NopCloser(bytes.NewReader(body)), size: size})
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("size hint %d: %d bytes, %v", size, len(got), err)
		}
	}
}

// checkResponseJSON: the fast encoder writes protojson's bytes (less protojson's random spaces), which
// protojson reads back to the same message.
func checkResponseJSON(t *testing.T, r *pb.SegmentResponse) {
	t.Helper()
	m := testMarshaler()
	want, wantErr := m.MarshalOptions.Marshal(r)
	got, ok := appendSegmentResponse(nil, r)
	if !ok {
		if wantErr == nil && !hasNilMask(r) {
			t.Fatalf("fast encoder declined %v", r)
		}
	} else {
		if wantErr != nil {
			t.Fatalf("fast encoder wrote what protojson refuses (%v): %v", wantErr, r)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, want); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, compact.Bytes()) {
			t.Fatalf("fast encoder:\n%s\nprotojson:\n%s", got, compact.Bytes())
		}
		var back pb.SegmentResponse
		if err := protojson.Unmarshal(got, &back); err != nil || !proto.Equal(&back, r) {
			t.Fatalf("fast output reads back as %v (%v), want %v", &back, err, r)
		}
	}
	// What the gateway writes.
	out, err := m.Marshal(r)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("Marshal error %v, protojson error %v", err, wantErr)
	}
	if err == nil {
		var a, b any
		if json.Unmarshal(out, &a) != nil || json.Unmarshal(want, &b) != nil || !jsonEqual(a, b) {
			t.Fatalf("Marshal:\n%s\nprotojson:\n%s", out, want)
		}
	}
	var buf bytes.Buffer
	if err := m.NewEncoder(&buf).Encode(r); (err == nil) != (wantErr == nil) || (err == nil && buf.String() != string(out)+"\n") {
		t.Fatalf("NewEncoder: %v, %q", err, buf.Bytes())
	}
}

func hasNilMask(r *pb.SegmentResponse) bool {
	for _, m := range r.Masks {
		if m == nil {
			return true
		}
	}
	return false
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestSegmentResponseJSONMatchesProtojson(t *testing.T) {
	cases := []*pb.SegmentResponse{
		{},
		{Masks: []*pb.ObjectMask{{}}, Timings: &pb.Timings{}},
		realisticResponse(),
		benchResponse(),
		{Text: "a\"b\\c/\b\f\n\r\t\x00\x01\x1f\x7f é 😀 \u2028 \ufffd <>&", ModelId: "org/m", Width: -1, Height: math.MaxInt32,
			Masks: []*pb.ObjectMask{{Label: "\x10", Coordinates: []int32{math.MinInt32, 0, -5}, Box: []int32{}}}},
		{Timings: &pb.Timings{QueueMs: math.NaN(), FetchMs: math.Inf(1), PreprocessMs: math.Inf(-1), VisionMs: math.Copysign(0, -1),
			PrefillMs: 1e-7, DecodeMs: 1e21, MasksMs: 123456789.125, TotalMs: -2.5e-300}},
		{Timings: &pb.Timings{QueueMs: 1e20, FetchMs: 1e-6, PreprocessMs: math.MaxFloat64, VisionMs: math.SmallestNonzeroFloat64,
			PrefillMs: 0.1, DecodeMs: 1.0 / 3}},
		{Text: "bad \xff utf-8"},
		{Masks: []*pb.ObjectMask{{Label: "\xc3"}}},
		{ModelId: "\xed\xa0\x80"},
		{Masks: []*pb.ObjectMask{nil}},
	}
	for _, r := range cases {
		if r.Timings != nil && math.IsNaN(r.Timings.QueueMs) {
			// proto.Equal never equates NaN; compare the bytes only.
			got, ok := appendSegmentResponse(nil, r)
			want, _ := testMarshaler().MarshalOptions.Marshal(r)
			var compact bytes.Buffer
			_ = json.Compact(&compact, want)
			if !ok || !bytes.Equal(got, compact.Bytes()) {
				t.Fatalf("fast encoder:\n%s\nprotojson:\n%s", got, compact.Bytes())
			}
			continue
		}
		checkResponseJSON(t, r)
	}
	// A nil message is protojson's business.
	var nilResp *pb.SegmentResponse
	got, err := testMarshaler().Marshal(nilResp)
	want, wantErr := testMarshaler().JSONPb.Marshal(nilResp)
	if string(got) != string(want) || (err == nil) != (wantErr == nil) {
		t.Fatalf("nil response: %q %v, protojson %q %v", got, err, want, wantErr)
	}
}
