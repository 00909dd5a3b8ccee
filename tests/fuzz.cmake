# Fuzz targets for the parsers of untrusted input. With clang and -DCOEXIST_FUZZ=ON they link
# libFuzzer (scripts/fuzz.sh builds and runs them all for a fixed time); otherwise a small driver
# replays the seed corpus, and ctest runs that as a regression test (label "unit", so ASan runs
# it too).
option(COEXIST_FUZZ "Build the fuzz targets with libFuzzer (clang only)" OFF)
set(coexist_fuzz_targets address csv config)
if(TARGET coexist_policyd_protocol)
  list(APPEND coexist_fuzz_targets netstring policy)
endif()
if(TARGET coexist_milter_logic)
  list(APPEND coexist_fuzz_targets milter)
endif()

# The libraries under test get coverage instrumentation and the sanitizers too: without it
# libFuzzer sees only the harness, and finds nothing deeper than its first branch. UBSan must
# stop at its first report, or a finding is a line of output and not a crash.
set(coexist_fuzz_flags -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
if(COEXIST_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "COEXIST_FUZZ needs clang (CXX=clang++): libFuzzer is part of clang")
  endif()
  foreach(lib IN ITEMS coexist_core coexist_policyd_protocol coexist_milter_logic)
    if(TARGET ${lib})
      target_compile_options(${lib} PRIVATE -fsanitize=fuzzer-no-link ${coexist_fuzz_flags})
      target_link_options(${lib} INTERFACE -fsanitize=address,undefined)
    endif()
  endforeach()
endif()

foreach(target IN LISTS coexist_fuzz_targets)
  set(name fuzz_${target})
  if(COEXIST_FUZZ)
    add_executable(${name} fuzz/${name}.cpp)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer ${coexist_fuzz_flags})
    target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  else()
    add_executable(${name} fuzz/${name}.cpp fuzz/replay_main.cpp)
  endif()
  target_include_directories(${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  if(target STREQUAL "netstring" OR target STREQUAL "policy")
    target_link_libraries(${name} PRIVATE coexist_policyd_protocol)
  elseif(target STREQUAL "milter")
    target_link_libraries(${name} PRIVATE coexist_milter_logic)
  else()
    target_link_libraries(${name} PRIVATE coexist_core)
  endif()
  # Under libFuzzer a corpus directory is where it writes new inputs: -runs=0 only replays it.
  set(replay_only "")
  if(COEXIST_FUZZ)
    set(replay_only -runs=0)
  endif()
  add_test(NAME ${name}_corpus COMMAND ${name} ${replay_only} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${target})
  set_tests_properties(${name}_corpus PROPERTIES LABELS unit TIMEOUT 120)
endforeach()
