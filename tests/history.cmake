# coexist-map history (by batch and time, CSV), dump/restore and stats --json (issue 12):
# Catch2 tests of the commands and of the real binary, and a Python test that reads the
# outputs with Python's own json and csv modules.
add_executable(history_tests history/test_history_dump.cpp)
target_link_libraries(history_tests PRIVATE coexist_admin coexist_catch_main)
target_include_directories(history_tests PRIVATE ${CMAKE_SOURCE_DIR}/maps/src ${CMAKE_CURRENT_SOURCE_DIR}/core
                                                 ${CMAKE_SOURCE_DIR}/maps/tool)
target_compile_definitions(history_tests PRIVATE COEXIST_MAP_BINARY="$<TARGET_FILE:coexist-map>")
add_dependencies(history_tests coexist-map)
add_test(NAME history_tests COMMAND history_tests)
set_tests_properties(history_tests PROPERTIES LABELS unit TIMEOUT 120)

add_test(NAME history_tool
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/history/test_history_tool.py)
set_tests_properties(history_tool PROPERTIES LABELS unit TIMEOUT 120
                     ENVIRONMENT "COEXIST_MAP=$<TARGET_FILE:coexist-map>")
