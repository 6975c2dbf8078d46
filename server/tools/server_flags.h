// paligemma-server's command line: every flag has an environment fallback (containers are
// configured by environment), and the flag wins over the environment, which wins over the default.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace pg::tools {

struct FlagSpec {
  std::string name;  // without "--"
  std::string env;   // environment fallback, or empty
  std::string def;   // default value
  bool is_bool = false;
  std::string help;
};

class Flags {
 public:
  explicit Flags(std::vector<FlagSpec> specs) : specs_(std::move(specs)) {}
  // --name value, --name=value; booleans also --name / --no-name. Unknown flags are errors.
  absl::Status Parse(int argc, char** argv);
  std::string Get(const std::string& name) const;
  bool GetBool(const std::string& name) const;
  absl::StatusOr<long long> GetInt(const std::string& name) const;
  bool WasSet(const std::string& name) const;  // on the command line or in the environment
  std::string Usage() const;

 private:
  const FlagSpec* Find(const std::string& name) const;
  std::vector<FlagSpec> specs_;
  std::map<std::string, std::string> given_;
};

}  // namespace pg::tools
