# Fault tests through a real private Postfix (tests/fault/run_fault.py): a load of messages
# counted by Message-ID while a daemon is SIGKILLed, the map is renamed away, truncated, grown
# by an import, or written by two writers at once. 0 lost, 0 misrouted, 0 duplicated.
if(TARGET coexist-milter AND TARGET coexist-policyd AND TARGET coexist-map)
  foreach(_scenario IN ITEMS milter_killed policyd_killed map_renamed map_truncated map_grows
                             two_writers)
    add_test(NAME fault_${_scenario}
             COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/fault/run_fault.py ${_scenario})
    # One at a time: each loads two relays and both daemons, and the machine may be small.
    set_tests_properties(fault_${_scenario} PROPERTIES
      LABELS "integration;fault" TIMEOUT 180 SKIP_RETURN_CODE 77 RESOURCE_LOCK coexist_fault
      ENVIRONMENT "COEXIST_MILTER=$<TARGET_FILE:coexist-milter>;COEXIST_POLICYD=$<TARGET_FILE:coexist-policyd>;COEXIST_MAP=$<TARGET_FILE:coexist-map>")
  endforeach()
endif()
