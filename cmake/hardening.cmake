# Sanitizer and fuzzing builds (docs/hardening.md). Both are off by default and belong in their own
# build directories:
#   PG_SANITIZE=ON  ASan + UBSan on everything compiled here (gcc or clang), e.g. build-asan/.
#   PG_FUZZ=ON      libFuzzer targets in tests/fuzz/ (clang only), e.g. build-fuzz/; implies ASan + UBSan.
# LibTorch, gRPC, protobuf, absl and curl are Debian's uninstrumented libraries: ASan still checks our
# code's accesses to their memory, it just cannot see bugs inside them.
option(PG_SANITIZE "Build with AddressSanitizer + UndefinedBehaviorSanitizer" OFF)
option(PG_FUZZ "Build the libFuzzer targets in tests/fuzz (needs clang; implies the sanitizers)" OFF)

set(PG_SANITIZER_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined
                       -fno-omit-frame-pointer)
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  # Spelled out so the set is the same whatever clang's -fsanitize=undefined default is.
  list(APPEND PG_SANITIZER_FLAGS -fsanitize=float-cast-overflow,integer-divide-by-zero)
endif()

if(PG_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "PG_FUZZ=ON needs clang (libFuzzer): configure with "
                        "-DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14")
  endif()
  set(PG_SANITIZE ON)
  # Every library gets coverage instrumentation; only the fuzz executables link libFuzzer's main.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

if(PG_SANITIZE)
  message(STATUS "PG_SANITIZE: ${PG_SANITIZER_FLAGS}")
  add_compile_options(${PG_SANITIZER_FLAGS})
  add_link_options(${PG_SANITIZER_FLAGS})
endif()
