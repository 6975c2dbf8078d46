# Fixes applied to Debian's stb_image.h (v2.27) at configure time; see server/image/CMakeLists.txt.
# Each fix is an exact (old text, new text) replacement; each says whether it is upstream's change or ours.

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

# 2. PNG: an empty IDAT chunk before any data made stbi__getn memcpy 0 bytes into a still-NULL buffer
#    (undefined behaviour, reported by UBSan; harmless on common libcs but the compiler may assume the
#    pointer non-null afterwards). Our own fix: reading 0 bytes returns at once.
#    Regression: tests/fuzz/regressions/fuzz_image/png-empty-idat-null-memcpy.png
set(_pg_stb_fix2_old [=[   if (s->img_buffer+n <= s->img_buffer_end) {
      memcpy(buffer, s->img_buffer, n);]=])
set(_pg_stb_fix2_new [=[   if (n == 0) return 1; // paligemma-serve: no memcpy into a NULL buffer
   if (s->img_buffer+n <= s->img_buffer_end) {
      memcpy(buffer, s->img_buffer, n);]=])

set(_pg_stb_fix2_present [=[no memcpy into a NULL buffer]=])

# 3. JPEG fast-AC path (baseline and progressive): a combined length longer than the bits left in the
#    buffer drove code_bits negative, and the next refill shifted by 32 or more (UBSan: shift exponent 33).
#    Upstream 2.28's check. Regression: tests/fuzz/regressions/fuzz_image/jpeg-fast-ac-past-code-bits.jpg
set(_pg_stb_fix3_old [=[s = r & 15; // combined length]=])
set(_pg_stb_fix3_new [=[s = r & 15; // combined length
         if (s > j->code_bits) return stbi__err("bad huffman code", "Combined length longer than code bits available"); // paligemma-serve: upstream 2.28 fix]=])
set(_pg_stb_fix3_present [=[Combined length longer than code bits available]=])

# 4. JPEG bit readers (extend_receive, get_bits, get_bit): out of data, they still consumed n bits and
#    drove code_bits negative (same shift overflow). Upstream 2.28 returns zeros instead.
set(_pg_stb_fix4_old [=[   if (j->code_bits < n) stbi__grow_buffer_unsafe(j);
]=])
set(_pg_stb_fix4_new [=[   if (j->code_bits < n) stbi__grow_buffer_unsafe(j);
   if (j->code_bits < n) return 0; // paligemma-serve: upstream 2.28 fix (ran out of bits)
]=])
set(_pg_stb_fix4_present [=[upstream 2.28 fix (ran out of bits)]=])
set(_pg_stb_fix5_old [=[   if (j->code_bits < 1) stbi__grow_buffer_unsafe(j);
]=])
set(_pg_stb_fix5_new [=[   if (j->code_bits < 1) stbi__grow_buffer_unsafe(j);
   if (j->code_bits < 1) return 0; // paligemma-serve: upstream 2.28 fix (ran out of a bit)
]=])
set(_pg_stb_fix5_present [=[upstream 2.28 fix (ran out of a bit)]=])

# 6. JPEG DC prediction: corrupt deltas overflowed the int predictor and its product with the quantiser
#    (signed overflow, undefined). Upstream 2.28 rejects both ("bad delta", "can't merge dc and ac"); this
#    is the same test written with a 64-bit product instead of its helper functions.
set(_pg_stb_fix6_old [=[dc = j->img_comp[b].dc_pred + diff;]=])
set(_pg_stb_fix6_new [=[if ((long long) j->img_comp[b].dc_pred + diff > 2147483647LL || (long long) j->img_comp[b].dc_pred + diff < -2147483647LL - 1) return stbi__err("bad delta","Corrupt JPEG"); // paligemma-serve: upstream 2.28 fix
   dc = j->img_comp[b].dc_pred + diff;]=])
set(_pg_stb_fix6_present [=["bad delta"]=])
set(_pg_stb_fix7_old [=[   data[0] = (short) (dc * dequant[0]);]=])
set(_pg_stb_fix7_new [=[   if ((long long) dc * dequant[0] > 32767 || (long long) dc * dequant[0] < -32768) return stbi__err("can't merge dc and ac", "Corrupt JPEG"); // paligemma-serve: upstream 2.28 fix
   data[0] = (short) (dc * dequant[0]);]=])
set(_pg_stb_fix7_present [=[(long long) dc * dequant[0] > 32767]=])
set(_pg_stb_fix8_old [=[      data[0] = (short) (dc * (1 << j->succ_low));]=])
set(_pg_stb_fix8_new [=[      if ((long long) dc * (1 << j->succ_low) > 32767 || (long long) dc * (1 << j->succ_low) < -32768) return stbi__err("can't merge dc and ac", "Corrupt JPEG"); // paligemma-serve: upstream 2.28 fix
      data[0] = (short) (dc * (1 << j->succ_low));]=])
set(_pg_stb_fix8_present [=[(long long) dc * (1 << j->succ_low) > 32767]=])

set(PG_STB_FIXES 1 2 3 4 5 6 7 8)

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
