// Runs the Python exporter (`python3 -m exporter`) as a subprocess: the server never imports
// torch's Python side, and an exporter crash cannot take the server down.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace pg::registry {

struct ExporterOptions {
  std::string python = "/usr/bin/python3";  // an interpreter with torch (Debian's python3-torch)
  std::string module_dir;                   // folder holding the `exporter` package (the repo root)
  // Bundle dtype (--dtype); empty: the checkpoint's. The server asks for its serving dtype, so the
  // engine uses the bundle's weights in place instead of converting them at every load.
  std::string dtype;
};

// Exports `checkpoint` (a checkpoint folder or HF cache folder models--org--name) and `vae_npz`
// into `out_dir`, atomically: it writes "<out_dir>.partial" and renames it when the exporter
// succeeded. The exporter's output goes to the server's stderr; on failure the error carries its
// last lines.
absl::Status RunExporter(const ExporterOptions& options, const std::string& checkpoint,
                         const std::string& vae_npz, const std::string& model_id,
                         const std::string& out_dir);

}  // namespace pg::registry
