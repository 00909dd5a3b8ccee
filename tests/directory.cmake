# Tests of libcoexist_directory (LDAP search and RFC 4533 sync that feed the map). Each part
# keeps its own block below.

# --- RFC 4533 control values (maps/directory/sync_controls.cpp): hand-written BER, no server.
add_executable(test_sync_controls directory/test_sync_controls.cpp)
target_link_libraries(test_sync_controls PRIVATE coexist_directory coexist_catch_main)
add_test(NAME test_sync_controls COMMAND test_sync_controls)
set_tests_properties(test_sync_controls PROPERTIES LABELS unit TIMEOUT 120)
# --- end of RFC 4533 control values

# --- LDAP session (maps/directory/ldap_session.cpp): one program, two ctest entries. The unit
# cases need no server; the [slapd] cases run through test_ldap_session.py, which starts a
# private slapd (tests/harness/coexist_harness/slapd.py) with TLS and 2,500 users.
add_executable(test_ldap_session directory/test_ldap_session.cpp)
target_link_libraries(test_ldap_session PRIVATE coexist_directory coexist_catch_main)
add_test(NAME ldap_session_unit COMMAND test_ldap_session "~[slapd]")
set_tests_properties(ldap_session_unit PROPERTIES LABELS unit TIMEOUT 60)
add_test(NAME ldap_session_slapd
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/directory/test_ldap_session.py)
set_tests_properties(ldap_session_slapd PROPERTIES
  LABELS integration TIMEOUT 180 SKIP_RETURN_CODE 77
  ENVIRONMENT "COEXIST_TEST_LDAP_SESSION=$<TARGET_FILE:test_ldap_session>")
# --- end of LDAP session

# --- Directory sync integration (tests/directory/test_directory_sync.py): coexist-map sync and
# sync --follow against private slapds (provider + syncrepl consumer, TLS, a 100k-user bulk
# load); the build dir is passed so the script runs <build>/maps/coexist-map.
# The idle-follower scenario is ~70 s of one small slapd and one follower doing nothing (max_age
# is at least 60 s): its own test, so ctest -j overlaps that wait with another test.
# Not RUN_SERIAL: its scenarios mostly wait (readings 1 s and 10 s after a rename, routes
# sampled for 13 s, 90 s bounds for a change to arrive), and alone it held CI's two cores for
# 2 min (4 under ASan) while one of them idled. COST starts it first (ctest -j runs the
# costliest first), so it never ends a run alone.
if(TARGET coexist-map)
  add_test(NAME directory_sync
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/directory/test_directory_sync.py
                   ${CMAKE_BINARY_DIR} --except idle-follower)
  set_tests_properties(directory_sync PROPERTIES
    LABELS integration TIMEOUT 900 COST 300 SKIP_RETURN_CODE 77)
  add_test(NAME directory_sync_idle
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/directory/test_directory_sync.py
                   ${CMAKE_BINARY_DIR} idle-follower)
  set_tests_properties(directory_sync_idle PROPERTIES
    LABELS integration TIMEOUT 300 COST 70 SKIP_RETURN_CODE 77)
endif()
# --- end of directory sync integration
