# The Debian package (cmake/packaging.cmake): cpack -G DEB into a temporary directory, then its
# control data, file list, programs, man pages and units (tests/package/check_deb.sh). Installing
# it on a fresh Debian 12 is scripts/package-check.sh: it needs root and a mirror, so not here.
find_program(COEXIST_DPKG_DEB dpkg-deb)
find_program(COEXIST_MAN man)
if(COEXIST_DPKG_DEB AND COEXIST_MAN)
  add_test(NAME package_deb
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/package/check_deb.sh
                   ${PROJECT_BINARY_DIR} ${PROJECT_SOURCE_DIR} ${PROJECT_VERSION}
                   $<IF:$<TARGET_EXISTS:coexist-milter>,1,0> $<IF:$<TARGET_EXISTS:coexist-policyd>,1,0>)
  set_tests_properties(package_deb PROPERTIES LABELS integration TIMEOUT 300 COST 40)
else()
  message(STATUS "package_deb test skipped: needs dpkg-deb and man")
endif()
