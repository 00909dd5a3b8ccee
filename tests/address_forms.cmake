# Issue 15's property test: a seeded table of tricky recipients through a real Postfix, once with
# coexist-milter and once with coexist-policyd's socketmap, against `coexist-map route`
# (tests/address/test_address_forms.py). COEXIST_FORMS_SEED repeats a run.
if(TARGET coexist-milter AND TARGET coexist-policyd AND TARGET coexist-map)
  add_test(NAME address_forms
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/address/test_address_forms.py)
  set_tests_properties(address_forms PROPERTIES
    LABELS "integration" TIMEOUT 120 SKIP_RETURN_CODE 77
    ENVIRONMENT "COEXIST_MILTER=$<TARGET_FILE:coexist-milter>;COEXIST_POLICYD=$<TARGET_FILE:coexist-policyd>;COEXIST_MAP=$<TARGET_FILE:coexist-map>;COEXIST_FORMS_COUNT=240")
endif()
