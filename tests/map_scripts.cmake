# coexist-map commands gam|exo and coexist-map check (issue 12): unit tests of the scripts'
# quoting and selection, the reviewed output of a sample batch, and check against real users,
# permissions and postconf (with the daemons' -n beside it).
add_executable(map_scripts_tests tool/test_commands_scripts.cpp)
target_link_libraries(map_scripts_tests PRIVATE coexist_admin coexist_catch_main)
target_include_directories(map_scripts_tests PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/core ${CMAKE_SOURCE_DIR}/maps/tool)
target_compile_definitions(map_scripts_tests PRIVATE COEXIST_MAP_BINARY="$<TARGET_FILE:coexist-map>")
add_test(NAME map_scripts_unit COMMAND map_scripts_tests)
set_tests_properties(map_scripts_unit PROPERTIES LABELS unit TIMEOUT 60)

add_test(NAME map_scripts
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/tool/test_map_scripts.py)
set_tests_properties(map_scripts PROPERTIES
  LABELS "integration" TIMEOUT 120 SKIP_RETURN_CODE 77
  ENVIRONMENT "COEXIST_MAP=$<TARGET_FILE:coexist-map>")

set(_map_check_env "COEXIST_MAP=$<TARGET_FILE:coexist-map>")
if(TARGET coexist-milter)
  list(APPEND _map_check_env "COEXIST_MILTER=$<TARGET_FILE:coexist-milter>")
endif()
if(TARGET coexist-policyd)
  list(APPEND _map_check_env "COEXIST_POLICYD=$<TARGET_FILE:coexist-policyd>")
endif()
add_test(NAME map_check
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/tool/test_map_check.py)
set_tests_properties(map_check PROPERTIES
  LABELS "integration" TIMEOUT 120 COST 60 SKIP_RETURN_CODE 77 ENVIRONMENT "${_map_check_env}")
