#include "server/tools/server_flags.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace pg::tools {

const FlagSpec* Flags::Find(const std::string& name) const {
  for (const auto& s : specs_) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

absl::Status Flags::Parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0)
      return absl::InvalidArgumentError("unexpected argument '" + arg + "'");
    arg = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (const size_t eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    const FlagSpec* spec = Find(arg);
    if (!spec && arg.rfind("no", 0) == 0 && (spec = Find(arg.substr(2))) && spec->is_bool &&
        !has_value) {
      given_[spec->name] = "false";
      continue;
    }
    if (!spec) return absl::InvalidArgumentError("unknown flag --" + arg);
    if (!has_value) {
      if (spec->is_bool) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError("flag --" + arg + " needs a value");
      }
    }
    given_[spec->name] = value;
  }
  for (const auto& s : specs_) {
    if (s.is_bool) {
      const std::string v = absl::AsciiStrToLower(Get(s.name));
      if (v != "true" && v != "false" && v != "1" && v != "0" && v != "yes" && v != "no") {
        return absl::InvalidArgumentError(absl::StrCat("--", s.name, " must be true or false"));
      }
    }
  }
  return absl::OkStatus();
}

std::string Flags::Get(const std::string& name) const {
  if (auto it = given_.find(name); it != given_.end()) return it->second;
  const FlagSpec* spec = Find(name);
  if (!spec) return "";
  if (!spec->env.empty()) {
    if (const char* v = std::getenv(spec->env.c_str()); v && *v) return v;
  }
  return spec->def;
}

bool Flags::WasSet(const std::string& name) const {
  if (given_.count(name)) return true;
  const FlagSpec* spec = Find(name);
  return spec && !spec->env.empty() && std::getenv(spec->env.c_str()) &&
         *std::getenv(spec->env.c_str());
}

bool Flags::GetBool(const std::string& name) const {
  const std::string v = absl::AsciiStrToLower(Get(name));
  return v == "true" || v == "1" || v == "yes";
}

absl::StatusOr<long long> Flags::GetInt(const std::string& name) const {
  long long v = 0;
  if (!absl::SimpleAtoi(Get(name), &v)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " needs an integer, got '", Get(name), "'"));
  }
  return v;
}

std::string Flags::Usage() const {
  std::string out = "usage: paligemma-server [flags]\n";
  for (const auto& s : specs_) {
    absl::StrAppend(&out, "  --", s.name, s.is_bool ? "" : " VALUE", "\n      ", s.help);
    if (!s.env.empty()) absl::StrAppend(&out, " [env ", s.env, "]");
    if (!s.def.empty()) absl::StrAppend(&out, " (default ", s.def, ")");
    absl::StrAppend(&out, "\n");
  }
  return out;
}

}  // namespace pg::tools
