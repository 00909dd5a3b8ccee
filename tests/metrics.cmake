# Prometheus metrics and shadow mode of both daemons (design 12, 13.6), through a real Postfix:
# counts that match the mail sent, metrics off by default, metrics_listen errors, shadow mode
# changing nothing.
if(TARGET coexist-milter AND TARGET coexist-policyd AND TARGET coexist-map)
  add_test(NAME metrics_shadow
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/metrics/test_metrics.py)
  set_tests_properties(metrics_shadow PROPERTIES
    LABELS "integration" TIMEOUT 400 COST 60 SKIP_RETURN_CODE 77
    ENVIRONMENT "COEXIST_MILTER=$<TARGET_FILE:coexist-milter>;COEXIST_POLICYD=$<TARGET_FILE:coexist-policyd>;COEXIST_MAP=$<TARGET_FILE:coexist-map>")
endif()
