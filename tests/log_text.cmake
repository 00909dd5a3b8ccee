# printable(), the one sanitizer for untrusted text in logs and replies (coexist_core).
add_executable(test_log_text core/test_log_text.cpp)
target_link_libraries(test_log_text PRIVATE coexist_core coexist_catch_main)
add_test(NAME core_log_text COMMAND test_log_text)
set_tests_properties(core_log_text PROPERTIES LABELS unit TIMEOUT 60)
