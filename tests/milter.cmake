# coexist-milter: unit tests of the libmilter-free logic, the harness self-test, and the
# integration tests that drive coexist-milter through a real private Postfix on loopback.
set(COEXIST_HARNESS_DIR ${CMAKE_CURRENT_SOURCE_DIR}/harness)

add_test(NAME harness_selftest
         COMMAND ${Python3_EXECUTABLE} ${COEXIST_HARNESS_DIR}/test_harness.py)
set_tests_properties(harness_selftest PROPERTIES
  LABELS "integration" TIMEOUT 120 SKIP_RETURN_CODE 77 RUN_SERIAL FALSE)
