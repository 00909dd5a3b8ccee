# coexist-policyd: unit tests of the protocol library, black-box tests of the daemon over its
# sockets (protocol and abuse), and integration tests through a real Postfix.
add_executable(policyd_tests
  policyd/test_netstring.cpp
  policyd/test_policy_request.cpp
  policyd/test_replies.cpp
  policyd/test_sessions.cpp
)
target_link_libraries(policyd_tests PRIVATE coexist_policyd_protocol coexist_catch_main)
add_test(NAME policyd_tests COMMAND policyd_tests)
set_tests_properties(policyd_tests PROPERTIES LABELS unit TIMEOUT 120)

# The event loop over real unix sockets, with services that fail on purpose.
if(TARGET coexist_policyd_server)
  add_executable(policyd_server_tests policyd/test_server.cpp policyd/test_batch_io.cpp)
  target_link_libraries(policyd_server_tests PRIVATE coexist_policyd_server coexist_daemon coexist_catch_main)
  # fixture.hpp (the temporary directory) also knows coexist-map.
  target_compile_definitions(policyd_server_tests PRIVATE COEXIST_MAP_BINARY="$<TARGET_FILE:coexist-map>")
  add_test(NAME policyd_server_tests COMMAND policyd_server_tests)
  set_tests_properties(policyd_server_tests PROPERTIES LABELS unit TIMEOUT 120)
endif()

if(TARGET coexist-policyd)
  # The daemon over its sockets: protocol, CLI, signals, privilege drop, and abuse.
  add_test(NAME policyd_blackbox
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/policyd/blackbox_test.py)
  set_tests_properties(policyd_blackbox PROPERTIES
    LABELS integration TIMEOUT 180 COST 60
    ENVIRONMENT "COEXIST_POLICYD=$<TARGET_FILE:coexist-policyd>;COEXIST_MAP=$<TARGET_FILE:coexist-map>")
endif()

if(TARGET coexist-policyd)
  # As a service: pre-flight -n, SIGHUP, sd_notify, socketmap keys that are not addresses.
  add_test(NAME policyd_service
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/policyd/service_test.py)
  set_tests_properties(policyd_service PROPERTIES
    LABELS integration TIMEOUT 180
    ENVIRONMENT "COEXIST_POLICYD=$<TARGET_FILE:coexist-policyd>;COEXIST_MAP=$<TARGET_FILE:coexist-map>")
endif()

if(TARGET coexist-policyd)
  # Through a real Postfix: postmap -q, check_policy_service at RCPT, socketmap routing to sinks.
  add_test(NAME policyd_postfix
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/policyd/postfix_test.py)
  set_tests_properties(policyd_postfix PROPERTIES
    LABELS integration TIMEOUT 300 SKIP_RETURN_CODE 77
    ENVIRONMENT "COEXIST_POLICYD=$<TARGET_FILE:coexist-policyd>;COEXIST_MAP=$<TARGET_FILE:coexist-map>")
endif()

if(TARGET coexist-policyd)
  # Transport mode through a real Postfix (design 11): the socketmap table transport in
  # transport_maps, the scenario table with recipients unchanged, DSNs, and a queued message
  # that follows a rollback (with its rewrite-mode twin that cannot).
  add_test(NAME policyd_transport
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/policyd/transport_test.py)
  set_tests_properties(policyd_transport PROPERTIES
    LABELS integration TIMEOUT 600 COST 40 SKIP_RETURN_CODE 77
    ENVIRONMENT "COEXIST_POLICYD=$<TARGET_FILE:coexist-policyd>;COEXIST_MAP=$<TARGET_FILE:coexist-map>")
endif()
