# Unit tests of the shared library and coexist-map's commands.
# One ctest entry per source file (Catch2's "[#file]" tag): ctest -j spreads them over the cores.
# As one entry, the sanitizer build's unit run waited some 100 s on it with the other core idle.
set(COEXIST_CORE_TEST_SOURCES
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
)
add_executable(core_tests ${COEXIST_CORE_TEST_SOURCES})
target_link_libraries(core_tests PRIVATE coexist_admin coexist_catch_main)
target_include_directories(core_tests PRIVATE ${CMAKE_SOURCE_DIR}/maps/src ${CMAKE_CURRENT_SOURCE_DIR}/core
                                              ${CMAKE_SOURCE_DIR}/maps/tool)
target_compile_definitions(core_tests PRIVATE COEXIST_MAP_BINARY="$<TARGET_FILE:coexist-map>"
                                              COEXIST_TEST_DATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/core/data")
add_dependencies(core_tests coexist-map)
foreach(source IN LISTS COEXIST_CORE_TEST_SOURCES)
  get_filename_component(file ${source} NAME_WE)
  add_test(NAME core_tests.${file} COMMAND core_tests "-#" "[#${file}]")
  set_tests_properties(core_tests.${file} PROPERTIES LABELS unit TIMEOUT 300)
endforeach()

