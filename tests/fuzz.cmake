# Fuzz targets for the parsers of untrusted input. With clang and -DCOEXIST_FUZZ=ON they link
# libFuzzer (run: build/tests/fuzz_csv tests/fuzz/corpus/csv); otherwise a small driver replays
# the seed corpus, and ctest runs that as a regression test (label "unit", so ASan runs it too).
option(COEXIST_FUZZ "Build the fuzz targets with libFuzzer (clang only)" OFF)
foreach(target address csv config)
  set(name fuzz_${target})
  if(COEXIST_FUZZ)
    add_executable(${name} fuzz/${name}.cpp)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  else()
    add_executable(${name} fuzz/${name}.cpp fuzz/replay_main.cpp)
  endif()
  target_link_libraries(${name} PRIVATE coexist_core)
  add_test(NAME ${name}_corpus COMMAND ${name} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${target})
  set_tests_properties(${name}_corpus PROPERTIES LABELS unit TIMEOUT 120)
endforeach()
