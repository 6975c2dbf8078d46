# Fixes applied to Debian's stb_image.h (v2.27) at configure time; see server/image/CMakeLists.txt.
# Each fix is the upstream v2.28 change, as an exact (old text, new text) replacement.

# 1. JPEG DHT: a Huffman table whose 16 code-length counts add up to more than 256 made
#    stbi__build_huffman write past h->size[257] (up to 4080 bytes over the stbi__jpeg struct's other
#    tables and pointers) before failing. Upstream 2.28 stops at 257 entries.
#    Regression: tests/fuzz/regressions/fuzz_image/jpeg-dht-count-over-256.jpg
set(_pg_stb_fix1_old [=[      for (j=0; j < count[i]; ++j)
         h->size[k++] = (stbi_uc) (i+1);]=])
set(_pg_stb_fix1_new [=[      for (j=0; j < count[i]; ++j) {
         h->size[k++] = (stbi_uc) (i+1);
         if(k >= 257) return stbi__err("bad size list","Corrupt JPEG"); // paligemma-serve: upstream 2.28 fix
      }]=])

set(_pg_stb_fix1_present [=["bad size list"]=])

set(PG_STB_FIXES 1)

function(pg_write_patched_stb in out)
  file(READ ${in} text)
  foreach(n ${PG_STB_FIXES})
    string(FIND "${text}" "${_pg_stb_fix${n}_old}" at)
    if(at GREATER_EQUAL 0)
      string(REPLACE "${_pg_stb_fix${n}_old}" "${_pg_stb_fix${n}_new}" text "${text}")
    else()
      string(FIND "${text}" "${_pg_stb_fix${n}_present}" fixed)
      if(fixed LESS 0)
        message(FATAL_ERROR "${in}: stb fix ${n} neither applies nor is present; review server/image/stb_fixes.cmake")
      endif()
    endif()
  endforeach()
  file(WRITE ${out}.tmp "${text}")
  configure_file(${out}.tmp ${out} COPYONLY)  # rewrites (and so rebuilds) only when the text changed
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${in} ${CMAKE_CURRENT_LIST_FILE})
endfunction()
