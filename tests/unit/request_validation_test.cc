// The edge's blank-prompt rule: a prompt that shows nothing is refused before any work.
#include "server/service/request_validation.h"

#include <catch2/catch.hpp>
#include <string>

CATCH_TEST_CASE("blank prompts: Unicode white space and invisible format characters") {
  using pg::service::IsBlankPrompt;
  CATCH_CHECK(IsBlankPrompt(""));
  CATCH_CHECK(IsBlankPrompt(" \t\r\n"));
  CATCH_CHECK(IsBlankPrompt("\v\f"));
  for (const char* blank :
       {"\xC2\x85", "\xC2\xA0", "\xE1\x9A\x80", "\xE2\x80\x80", "\xE2\x80\x8A", "\xE2\x80\xA8",
        "\xE2\x80\xA9", "\xE2\x80\xAF", "\xE2\x81\x9F", "\xE3\x80\x80", "\xE1\xA0\x8E",
        "\xE2\x80\x8B", "\xE2\x80\x8C", "\xE2\x80\x8D", "\xE2\x81\xA0", "\xEF\xBB\xBF"}) {
    CATCH_INFO(blank);
    CATCH_CHECK(IsBlankPrompt(blank));
    CATCH_CHECK(IsBlankPrompt(std::string(" ") + blank + "\t" + blank));
    CATCH_CHECK_FALSE(IsBlankPrompt(std::string(blank) + "cat"));
  }
  CATCH_CHECK_FALSE(IsBlankPrompt("segment cat"));
  CATCH_CHECK_FALSE(IsBlankPrompt(" x "));
  CATCH_CHECK_FALSE(IsBlankPrompt("\xE2\x80\x8E"));  // U+200E LEFT-TO-RIGHT MARK is not listed
  CATCH_CHECK_FALSE(IsBlankPrompt("\xE3\x81\x82"));  // あ
  CATCH_CHECK_FALSE(IsBlankPrompt("\xFF"));          // not UTF-8: something, not nothing
  CATCH_CHECK_FALSE(IsBlankPrompt(" \xC2"));         // a truncated sequence
  CATCH_CHECK_FALSE(IsBlankPrompt(std::string(1, '\0')));
}
