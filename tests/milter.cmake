# coexist-milter: unit tests of the libmilter-free logic, the harness self-test, and the
# integration tests that drive coexist-milter through a real private Postfix on loopback.
set(COEXIST_HARNESS_DIR ${CMAKE_CURRENT_SOURCE_DIR}/harness)

add_test(NAME harness_selftest
         COMMAND ${Python3_EXECUTABLE} ${COEXIST_HARNESS_DIR}/test_harness.py)
set_tests_properties(harness_selftest PROPERTIES
  LABELS "integration" TIMEOUT 120 SKIP_RETURN_CODE 77 RUN_SERIAL FALSE)
# The private slapd of the directory tests, bench and lab (coexist_harness/slapd.py).
add_test(NAME harness_slapd
         COMMAND ${Python3_EXECUTABLE} ${COEXIST_HARNESS_DIR}/test_slapd.py)
set_tests_properties(harness_slapd PROPERTIES
  LABELS "integration" TIMEOUT 180 SKIP_RETURN_CODE 77)

if(TARGET coexist_milter_logic)
  add_executable(test_milter_logic milter/test_milter_logic.cpp)
  target_link_libraries(test_milter_logic PRIVATE coexist_milter_logic coexist_catch_main)
  add_test(NAME milter_logic COMMAND test_milter_logic)
  set_tests_properties(milter_logic PROPERTIES LABELS "unit" TIMEOUT 60)
endif()

# The callbacks themselves, against a libmilter stub instead of libmilter.
if(TARGET coexist_milter_filter)
  add_executable(test_milter_filter milter/test_milter_filter.cpp milter/libmilter_stub.cpp)
  target_link_libraries(test_milter_filter PRIVATE coexist_milter_filter coexist_admin coexist_catch_main)
  # fixture.hpp (the temporary directory, the standard configuration) also knows coexist-map.
  target_compile_definitions(test_milter_filter PRIVATE COEXIST_MAP_BINARY="$<TARGET_FILE:coexist-map>")
  add_test(NAME milter_filter COMMAND test_milter_filter)
  set_tests_properties(milter_filter PROPERTIES LABELS "unit" TIMEOUT 60)
endif()

# coexist-milter through a real private Postfix (tests/harness): routing, orig/ORCPT, live map
# changes, unreadable map, loops, sessions; the daemon basics (inet6, unix socket, CLI); and the
# service (pre-flight -n, SIGHUP, sd_notify).
if(TARGET coexist-milter AND TARGET coexist-map)
  foreach(_suite IN ITEMS milter_postfix milter_daemon milter_service)
    add_test(NAME ${_suite}
             COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/milter/test_${_suite}.py)
    set_tests_properties(${_suite} PROPERTIES
      LABELS "integration" TIMEOUT 240 SKIP_RETURN_CODE 77
      ENVIRONMENT "COEXIST_MILTER=$<TARGET_FILE:coexist-milter>;COEXIST_MAP=$<TARGET_FILE:coexist-map>")
  endforeach()
endif()
