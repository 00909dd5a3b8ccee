# The lab (contrib/lab) as an integration test: three real Postfix instances, both daemons,
# every flow of the guides; up, run, down twice. Not RUN_SERIAL: every port is its own (free
# ports), and its waits are bounds, not pauses; COST starts it early under ctest -j.
if(TARGET coexist-milter AND TARGET coexist-policyd)
  add_test(NAME lab COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/lab/test_lab.py ${CMAKE_BINARY_DIR})
  set_tests_properties(lab PROPERTIES LABELS integration TIMEOUT 600 COST 200)
endif()
