package gateway

import (
	"encoding/json"
	"fmt"

	"github.com/paligemma-serve/paligemma-serve/gateway/gen"
)

// handWritten documents what protoc-gen-openapiv2 cannot see: the reference app's endpoints, the
// health endpoints and the error body every route shares. Merged into the generated document.
const handWritten = `{
  "paths": {
    "/": {
      "get": {
        "summary": "Welcome message (the reference app's root).",
        "operationId": "Root",
        "tags": ["Original API"],
        "responses": {
          "200": {"description": "Welcome.", "schema": {"$ref": "#/definitions/Welcome"}}
        }
      }
    },
    "/segment": {
      "post": {
        "summary": "Segment an image (the reference app's form endpoint; /segment/ is the same).",
        "description": "Send prompt plus exactly one of image_file (a file part) or image_url. Errors answer {\"status\": \"error\", \"detail\": ...}.",
        "operationId": "SegmentForm",
        "tags": ["Original API"],
        "consumes": ["multipart/form-data", "application/x-www-form-urlencoded"],
        "parameters": [
          {"name": "prompt", "in": "formData", "required": true, "type": "string", "description": "e.g. \"segment left wheel\""},
          {"name": "image_url", "in": "formData", "required": false, "type": "string", "description": "http(s) URL the server fetches"},
          {"name": "image_file", "in": "formData", "required": false, "type": "file", "description": "JPEG, PNG, BMP or GIF"},
          {"name": "model_id", "in": "formData", "required": false, "type": "string", "description": "empty: the server's default model"},
          {"name": "max_new_tokens", "in": "formData", "required": false, "type": "integer", "format": "int32", "description": "generation limit (server default 256)"},
          {"name": "include_image", "in": "formData", "required": false, "type": "boolean", "description": "return the model-input image (default true)"},
          {"name": "include_full_masks", "in": "formData", "required": false, "type": "boolean", "description": "return original-size binary masks (default false here)"},
          {"name": "options", "in": "formData", "required": false, "type": "string", "description": "SegmentOptions as JSON, e.g. {\"include_image\": false}"}
        ],
        "responses": {
          "200": {"description": "Boxes and masks.", "schema": {"$ref": "#/definitions/SegmentFormResponse"}},
          "400": {"description": "Bad input.", "schema": {"$ref": "#/definitions/Error"}},
          "401": {"description": "No or unknown API key (server with --api_keys_file).", "schema": {"$ref": "#/definitions/Error"}},
          "413": {"description": "Body over the limit.", "schema": {"$ref": "#/definitions/Error"}},
          "503": {"description": "Backend unavailable.", "schema": {"$ref": "#/definitions/Error"}},
          "default": {"description": "Error.", "schema": {"$ref": "#/definitions/Error"}}
        }
      }
    },
    "/healthz": {
      "get": {
        "summary": "The gateway is alive.", "operationId": "Healthz", "tags": ["Health"],
        "responses": {"200": {"description": "Alive.", "schema": {"$ref": "#/definitions/Health"}}}
      }
    },
    "/readyz": {
      "get": {
        "summary": "The gRPC server reports SERVING (grpc.health.v1).", "operationId": "Readyz", "tags": ["Health"],
        "responses": {
          "200": {"description": "Ready.", "schema": {"$ref": "#/definitions/Health"}},
          "503": {"description": "Not ready.", "schema": {"$ref": "#/definitions/Error"}}
        }
      }
    },
    "/metrics": {
      "get": {
        "summary": "Prometheus metrics: the gateway's HTTP metrics and the server's counters (paligemma_server_*; paligemma_server_up 0 when the server does not answer).",
        "operationId": "Metrics", "tags": ["Health"], "produces": ["text/plain"],
        "responses": {
          "200": {"description": "Prometheus text exposition format.", "schema": {"type": "string"}},
          "401": {"description": "No or unknown API key: the server refused the scrape's GetStats.", "schema": {"$ref": "#/definitions/Error"}},
          "403": {"description": "The key is not an admin key (and the server lacks --metrics_open).", "schema": {"$ref": "#/definitions/Error"}}
        }
      }
    }
  },
  "definitions": {
    "Welcome": {"type": "object", "properties": {"message": {"type": "string"}}},
    "Health": {"type": "object", "properties": {"status": {"type": "string"}}},
    "Error": {"type": "object", "properties": {"status": {"type": "string", "example": "error"}, "detail": {"type": "string"}}},
    "FormMask": {"type": "object", "properties": {
      "mask": {"type": "string", "format": "byte", "description": "64x64 greyscale PNG, base64"},
      "coordinates": {"type": "array", "items": {"type": "integer"}, "description": "[x_min, y_min, x_max, y_max] in model-input pixels"},
      "label": {"type": "string"},
      "box": {"type": "array", "items": {"type": "integer"}, "description": "[x_min, y_min, x_max, y_max] in original-image pixels"},
      "has_mask": {"type": "boolean"},
      "full_mask": {"type": "string", "format": "byte", "description": "only when include_full_masks"}
    }},
    "SegmentFormResponse": {"type": "object", "properties": {
      "image": {"type": "string", "format": "byte", "description": "the model-input image, PNG, base64"},
      "masks": {"type": "array", "items": {"$ref": "#/definitions/FormMask"}},
      "text": {"type": "string"},
      "model_id": {"type": "string"},
      "width": {"type": "integer"},
      "height": {"type": "integer"},
      "timings": {"$ref": "#/definitions/v1Timings"}
    }}
  }
}`

// OpenAPI is the document served at /openapi.json: protoc-gen-openapiv2's output for the /v1 routes,
// with the hand-written entries added and every generated error response pointed at the real error body.
func OpenAPI() ([]byte, error) {
	var doc, extra map[string]any
	if err := json.Unmarshal(gen.OpenAPISpec, &doc); err != nil {
		return nil, fmt.Errorf("generated OpenAPI: %w", err)
	}
	if err := json.Unmarshal([]byte(handWritten), &extra); err != nil {
		return nil, fmt.Errorf("hand-written OpenAPI: %w", err)
	}
	doc["info"] = map[string]any{
		"title":       "PaliGemma Segmentation API",
		"version":     "v1",
		"description": "REST gateway of paligemma-serve: the reference app's / and /segment, and JSON routes generated from proto/paligemma/v1/paligemma.proto.",
	}
	paths, _ := doc["paths"].(map[string]any)
	defs, _ := doc["definitions"].(map[string]any)
	if paths == nil || defs == nil {
		return nil, fmt.Errorf("generated OpenAPI has no paths or definitions")
	}
	errRef := map[string]any{"$ref": "#/definitions/Error"}
	for _, item := range paths {
		ops, _ := item.(map[string]any)
		for _, op := range ops {
			o, _ := op.(map[string]any)
			if resp, ok := o["responses"].(map[string]any); ok {
				if d, ok := resp["default"].(map[string]any); ok {
					d["schema"] = errRef
				}
			}
		}
	}
	delete(defs, "rpcStatus")
	delete(defs, "protobufAny")
	for k, v := range extra["paths"].(map[string]any) {
		paths[k] = v
	}
	for k, v := range extra["definitions"].(map[string]any) {
		defs[k] = v
	}
	// API keys (when the server has --api_keys_file): Swagger UI's "Authorize" sends them on every call
	// but those of the open routes (health, the welcome message).
	doc["securityDefinitions"] = map[string]any{"bearer": map[string]any{
		"type": "apiKey", "name": "Authorization", "in": "header",
		"description": "\"Bearer <key>\" when the server has --api_keys_file: a user key for segmenting and listing models, an admin key also for loading, unloading, /v1/stats and /metrics. A missing or unknown key is 401, a key without the role 403.",
	}}
	doc["security"] = []any{map[string]any{"bearer": []any{}}}
	for _, open := range []string{"/", "/healthz", "/readyz"} {
		for _, op := range paths[open].(map[string]any) {
			op.(map[string]any)["security"] = []any{}
		}
	}
	doc["tags"] = append([]any{
		map[string]any{"name": "Original API", "description": "The reference FastAPI app's endpoints, unchanged."},
	}, append(toSlice(doc["tags"]), map[string]any{"name": "Health"})...)
	return json.MarshalIndent(doc, "", "  ")
}

func toSlice(v any) []any {
	s, _ := v.([]any)
	return s
}
