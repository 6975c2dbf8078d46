package gateway

import (
	"encoding/base64"
	"encoding/json"
	"net/http"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/paligemma-serve/paligemma-serve/gateway/gen/paligemma/v1"
)

// formMask is one entry of the reference app's "masks": mask and coordinates first, then our additions.
type formMask struct {
	Mask        string  `json:"mask"`
	Coordinates []int32 `json:"coordinates"`
	Label       string  `json:"label"`
	Box         []int32 `json:"box"`
	HasMask     bool    `json:"has_mask"`
	FullMask    string  `json:"full_mask,omitempty"`
}

// formResponse is the reference app's answer {"image", "masks"} followed by our extra fields.
type formResponse struct {
	Image   string          `json:"image"`
	Masks   []formMask      `json:"masks"`
	Text    string          `json:"text"`
	ModelID string          `json:"model_id"`
	Width   int32           `json:"width"`
	Height  int32           `json:"height"`
	Timings json.RawMessage `json:"timings"`
}

var b64 = base64.StdEncoding

func nonNil(v []int32) []int32 {
	if v == nil {
		return []int32{}
	}
	return v
}

func toFormResponse(r *pb.SegmentResponse) formResponse {
	out := formResponse{
		Image:   b64.EncodeToString(r.GetImage()),
		Masks:   make([]formMask, 0, len(r.GetMasks())),
		Text:    r.GetText(),
		ModelID: r.GetModelId(),
		Width:   r.GetWidth(),
		Height:  r.GetHeight(),
	}
	for _, m := range r.GetMasks() {
		fm := formMask{
			Mask:        b64.EncodeToString(m.GetMask()),
			Coordinates: nonNil(m.GetCoordinates()),
			Label:       m.GetLabel(),
			Box:         nonNil(m.GetBox()),
			HasMask:     m.GetHasMask(),
		}
		if len(m.GetFullMask()) > 0 {
			fm.FullMask = b64.EncodeToString(m.GetFullMask())
		}
		out.Masks = append(out.Masks, fm)
	}
	timings := r.GetTimings()
	if timings == nil {
		timings = &pb.Timings{}
	}
	t, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(timings)
	if err != nil {
		t = []byte("{}")
	}
	out.Timings = compactJSON(t)
	return out
}

// compactJSON removes the random whitespace protojson may insert, so the bytes are stable.
func compactJSON(b []byte) json.RawMessage {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return b
	}
	return marshalJSON(v)
}

// handleSegmentForm is the reference app's POST /segment: form fields in, {"image", "masks"} out.
func (s *Server) handleSegmentForm(w http.ResponseWriter, r *http.Request) {
	fields, err := readForm(r, s.cfg.MaxBodyBytes)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	req, err := toSegmentRequest(fields)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	setModel(r.Context(), req.GetModelId())
	resp, err := s.segment.Segment(outgoingContext(r), req)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	setModel(r.Context(), resp.GetModelId())
	writeJSON(w, http.StatusOK, toFormResponse(resp))
}

func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	code, detail := s.errorStatus(r, err)
	WriteError(w, code, detail)
}
