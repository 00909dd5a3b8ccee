# Unit tests of libcoexist_daemon (daemon/): listening sockets and their permissions.
if(TARGET coexist_daemon)
  add_executable(daemon_tests daemon/test_listen.cpp daemon/test_map_watcher.cpp)
  target_link_libraries(daemon_tests PRIVATE coexist_daemon coexist_catch_main)
  target_include_directories(daemon_tests PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/core)
  # fixture.hpp (the temporary directory) also knows coexist-map.
  target_compile_definitions(daemon_tests PRIVATE COEXIST_MAP_BINARY="$<TARGET_FILE:coexist-map>")
  add_test(NAME daemon_tests COMMAND daemon_tests)
  set_tests_properties(daemon_tests PROPERTIES LABELS unit TIMEOUT 120)
endif()
