package gateway

import (
	"bytes"
	"io"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"

	pb "github.com/paligemma-serve/paligemma-serve/gateway/gen/paligemma/v1"
)

func TestBodyJSONPbDecodesLikeJSONPb(t *testing.T) {
	fast, std := bodyJSONPb{&runtime.JSONPb{}}, &runtime.JSONPb{}
	body := []byte(`{"prompt": "segment cat", "imageData": "AAEC", "model_id": "tiny", "max_new_tokens": 7}`)
	var a, b pb.SegmentRequest
	if err := fast.NewDecoder(bytes.NewReader(body)).Decode(&a); err != nil {
		t.Fatal(err)
	}
	if err := std.NewDecoder(bytes.NewReader(body)).Decode(&b); err != nil {
		t.Fatal(err)
	}
	if a.GetPrompt() != "segment cat" || !bytes.Equal(a.GetImageData(), []byte{0, 1, 2}) || a.GetModelId() != "tiny" ||
		a.GetMaxNewTokens() != 7 || a.String() != b.String() {
		t.Fatalf("decoded %v, JSONPb decoded %v", &a, &b)
	}
	// An empty body is "no fields" for the generated handlers (io.EOF), as with JSONPb.
	for _, empty := range []string{"", "  \n"} {
		var r pb.SegmentRequest
		if err := fast.NewDecoder(bytes.NewReader([]byte(empty))).Decode(&r); err != io.EOF {
			t.Fatalf("empty body %q: %v, want io.EOF", empty, err)
		}
	}
	for _, bad := range []string{`{"prompt": 1}`, `{"prompt": "a"} trailing`, `{"nope": 1}`, `{`} {
		var r pb.SegmentRequest
		if err := fast.NewDecoder(bytes.NewReader([]byte(bad))).Decode(&r); err == nil {
			t.Fatalf("body %q decoded without error", bad)
		}
	}
}
