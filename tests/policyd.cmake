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
