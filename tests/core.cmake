# Unit tests of the shared library and coexist-map's commands.
add_executable(core_tests
  core/test_address.cpp
  core/test_config.cpp
  core/test_record_csv.cpp
  core/test_route.cpp
  core/test_map_admin.cpp
  core/test_import_files.cpp
  core/test_import_batches.cpp
  core/test_concurrency.cpp
  core/test_reader_handles.cpp
  core/test_socket_spec.cpp
  core/test_map_faults.cpp
  core/test_map_growth.cpp
  core/test_map_doubt.cpp
  core/test_directory_view.cpp
  core/test_schedule.cpp
  core/test_terminal_text.cpp
)
target_link_libraries(core_tests PRIVATE coexist_admin coexist_catch_main)
target_include_directories(core_tests PRIVATE ${CMAKE_SOURCE_DIR}/maps/src ${CMAKE_CURRENT_SOURCE_DIR}/core
                                              ${CMAKE_SOURCE_DIR}/maps/tool)
target_compile_definitions(core_tests PRIVATE COEXIST_MAP_BINARY="$<TARGET_FILE:coexist-map>"
                                              COEXIST_TEST_DATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/core/data")
add_dependencies(core_tests coexist-map)
# Two ctest entries, so that ctest -j runs them side by side: the files whose cases run
# processes and threads against a changing map (about 3/4 of the time, 90 of 120 s under
# ASan+UBSan in CI), and all the others. -# tags each case with its file's name ([#file]).
set(_core_slow_files "[#test_concurrency],[#test_map_growth],[#test_map_faults],[#test_reader_handles]")
add_test(NAME core_tests_map_under_change COMMAND core_tests "-#" "${_core_slow_files}")
add_test(NAME core_tests COMMAND core_tests "-#" "~[#test_concurrency]~[#test_map_growth]~[#test_map_faults]~[#test_reader_handles]")
set_tests_properties(core_tests_map_under_change core_tests PROPERTIES LABELS unit TIMEOUT 300)
set_tests_properties(core_tests_map_under_change PROPERTIES COST 100)
