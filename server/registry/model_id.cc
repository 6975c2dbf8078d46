#include "server/registry/model_id.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace pg::registry {
namespace {

constexpr size_t kMaxPart = 96;

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

absl::Status ValidatePart(std::string_view id, std::string_view part) {
  const std::string quoted = absl::StrCat("model id '", std::string(id), "'");
  if (part.empty()) return absl::InvalidArgumentError(absl::StrCat(quoted, " has an empty part"));
  if (part.size() > kMaxPart) {
    return absl::InvalidArgumentError(
        absl::StrCat(quoted, " has a part longer than ", kMaxPart, " characters"));
  }
  for (char c : part) {
    if (!IsIdChar(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat(quoted, " may only hold letters, digits, '.', '_', '-' and one '/'"));
    }
  }
  if (part.front() == '.' || part.front() == '-') {
    return absl::InvalidArgumentError(absl::StrCat(quoted, " has a part starting with '.' or '-'"));
  }
  if (part.find("--") != std::string_view::npos || part.find("..") != std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(quoted, " may not contain '--' or '..'"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateModelId(std::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError("model id is empty");
  const size_t slash = id.find('/');
  if (slash == std::string_view::npos) return ValidatePart(id, id);
  if (id.find('/', slash + 1) != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("model id '", std::string(id), "' may hold at most one '/' (org/name)"));
  }
  if (absl::Status s = ValidatePart(id, id.substr(0, slash)); !s.ok()) return s;
  return ValidatePart(id, id.substr(slash + 1));
}

std::string HfCacheFolderName(std::string_view id) {
  return absl::StrCat("models--", absl::StrReplaceAll(std::string(id), {{"/", "--"}}));
}

}  // namespace pg::registry
