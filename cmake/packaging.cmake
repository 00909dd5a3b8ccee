# Installation layout and the Debian package.
#
#   cmake --install build            binaries, units, man pages, sample config where Debian
#                                    expects them (prefix /usr unless given another)
#   cd build && cpack -G DEB         coexist_<version>-1_<arch>.deb
#   ctest -R package_deb             checks the package offline (tests/package/check_deb.sh)
#   scripts/package-check.sh --boot  installs it on a fresh Debian 12 and boots it (root, mirror)
#
# Fixed places, whatever the prefix: the programs read /etc/coexist/coexist.ini by default and
# systemd reads units from its own directory, so those two are absolute.

# Debian's prefix is /usr. A build that did not choose one gets /usr instead of CMake's
# /usr/local, so that "cmake --install" puts things where Debian expects them. The package is
# always built for /usr, whatever the build's prefix (CPACK_INSTALL_PREFIX below).
if(CMAKE_INSTALL_PREFIX_INITIALIZED_TO_DEFAULT)
  set(CMAKE_INSTALL_PREFIX /usr CACHE PATH "Install prefix" FORCE)
endif()

set(COEXIST_CONFIG_DIR /etc/coexist CACHE PATH "Where coexist.ini is installed")
set(COEXIST_CONFIG_FILE ${COEXIST_CONFIG_DIR}/coexist.ini)
find_package(PkgConfig QUIET)
pkg_get_variable(_coexist_unitdir systemd systemdsystemunitdir)
if(NOT _coexist_unitdir)
  set(_coexist_unitdir /lib/systemd/system)  # Debian 12
endif()
set(COEXIST_SYSTEMD_UNIT_DIR ${_coexist_unitdir} CACHE PATH "systemd system unit directory")
set(COEXIST_DOCDIR ${CMAKE_INSTALL_DATAROOTDIR}/doc/coexist)

# --- programs -----------------------------------------------------------------------------
# coexist-map installs itself (maps/), coexist-policyd too (policyd/); the milter's own
# CMakeLists may not yet. Add the rule only where a front-end does not have one, so a binary
# is never installed twice or in two places.
foreach(_daemon IN ITEMS milter policyd)
  set(_target coexist-${_daemon})
  if(TARGET ${_target})
    file(READ ${PROJECT_SOURCE_DIR}/${_daemon}/CMakeLists.txt _cmakelists)
    string(FIND "${_cmakelists}" "install(TARGETS ${_target}" _has_install)
    if(_has_install EQUAL -1)
      install(TARGETS ${_target} RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
    endif()
  endif()
endforeach()

# --- systemd --------------------------------------------------------------------------------
# ExecStart= names the installed binary, so the unit is made at install time from the prefix
# the install actually uses ("cmake --install --prefix", or /usr for the package).
foreach(_daemon IN ITEMS milter policyd)
  if(TARGET coexist-${_daemon})
    install(CODE "
      set(COEXIST_SBINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SBINDIR}\")
      set(COEXIST_CONFIG_FILE \"${COEXIST_CONFIG_FILE}\")
      configure_file(\"${PROJECT_SOURCE_DIR}/contrib/systemd/coexist-${_daemon}.service\"
                     \"${PROJECT_BINARY_DIR}/systemd/coexist-${_daemon}.service\" @ONLY)
      file(INSTALL DESTINATION \"${COEXIST_SYSTEMD_UNIT_DIR}\" TYPE FILE
           FILES \"${PROJECT_BINARY_DIR}/systemd/coexist-${_daemon}.service\")")
  endif()
endforeach()
# coexist-sync.service runs "coexist-map sync --follow" (the directory follower); coexist-map
# is always built, so its unit is always installed (not enabled: see the unit's header).
install(CODE "
  set(COEXIST_SBINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SBINDIR}\")
  set(COEXIST_CONFIG_FILE \"${COEXIST_CONFIG_FILE}\")
  configure_file(\"${PROJECT_SOURCE_DIR}/contrib/systemd/coexist-sync.service\"
                 \"${PROJECT_BINARY_DIR}/systemd/coexist-sync.service\" @ONLY)
  file(INSTALL DESTINATION \"${COEXIST_SYSTEMD_UNIT_DIR}\" TYPE FILE
       FILES \"${PROJECT_BINARY_DIR}/systemd/coexist-sync.service\")")
install(FILES contrib/systemd/coexist.sysusers DESTINATION lib/sysusers.d
        RENAME coexist.conf)
install(FILES contrib/systemd/coexist.tmpfiles DESTINATION lib/tmpfiles.d
        RENAME coexist.conf)

# --- man pages (gzip -n: reproducible, as Debian ships them) --------------------------------
find_program(COEXIST_GZIP gzip REQUIRED)
set(_coexist_man_pages man/coexist-map.8 man/coexist.ini.5)
foreach(_daemon IN ITEMS milter policyd)
  if(TARGET coexist-${_daemon})
    list(APPEND _coexist_man_pages man/coexist-${_daemon}.8)
  endif()
endforeach()
set(_coexist_man_gz)
foreach(_page IN LISTS _coexist_man_pages)
  get_filename_component(_name ${_page} NAME)
  string(REGEX REPLACE ".*\\.([0-9])$" "\\1" _section ${_name})
  set(_gz ${PROJECT_BINARY_DIR}/man/${_name}.gz)
  add_custom_command(OUTPUT ${_gz}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man
    COMMAND ${COEXIST_GZIP} -9 -n -c ${PROJECT_SOURCE_DIR}/${_page} > ${_gz}
    DEPENDS ${PROJECT_SOURCE_DIR}/${_page}
    COMMENT "Compressing ${_name}" VERBATIM)
  list(APPEND _coexist_man_gz ${_gz})
  install(FILES ${_gz} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${_section})
endforeach()
add_custom_target(coexist_man_pages ALL DEPENDS ${_coexist_man_gz})

# --- configuration and documentation ----------------------------------------------------------
# The conffile: dpkg keeps the admin's edits on upgrade (listed in conffiles below).
install(FILES contrib/coexist.ini.sample DESTINATION ${COEXIST_CONFIG_DIR} RENAME coexist.ini
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES contrib/coexist.ini.sample DESTINATION ${COEXIST_DOCDIR}/examples RENAME coexist.ini)
install(FILES contrib/postfix/README.md contrib/postfix/main.cf.milter contrib/postfix/main.cf.policy
              contrib/postfix/main.cf.socketmap contrib/postfix/main.cf.transport
              contrib/postfix/master.cf
        DESTINATION ${COEXIST_DOCDIR}/examples/postfix)
install(FILES contrib/directory/README.md contrib/directory/openldap.ini
              contrib/directory/active-directory.ini contrib/directory/google-secure-ldap.ini
        DESTINATION ${COEXIST_DOCDIR}/examples/directory)
install(FILES README.md NEWS DESTINATION ${COEXIST_DOCDIR})
# Debian policy 12.5: every package ships its copyright file, in the machine-readable format.
install(FILES contrib/debian/copyright DESTINATION ${COEXIST_DOCDIR})

# --- the Debian package -----------------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME coexist)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "coexist maintainers <postmaster@localhost>")
# Stage with DESTDIR and prefix /usr: absolute destinations (/etc, the unit directory) land in
# the package as they are, and the units' ExecStart= says /usr/sbin.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION mail)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Library dependencies from dpkg-shlibdeps (needs dpkg-dev), plus what the maintainer scripts use.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# postfix: the daemons speak only Postfix's protocols (policy delegation, socketmap, milter
# with Postfix's ORCPT handling), and a Depends, unlike a Recommends, makes dpkg configure
# Postfix first, so the postinst finds group postfix and can put coexist in it (see there).
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, postfix (>= 3.0)")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postfix-lmdb, lmdb-utils")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "per-recipient coexistence routing for Postfix during mailbox migrations")
# The long description, one paragraph per line group; CPack indents it for the control file.
# No double quotes in it: CPack writes it into CPackConfig.cmake unescaped.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
"While an old and a new mail system both host a domain, a Postfix relay sends
each migrated user's mail to the new system through a routing address
(user@o365.example.com) and passes everyone else on to the old system
unchanged, as the internal relay domains of Exchange Online do.

coexist-map keeps the LMDB map of users, states and aliases; coexist-milter
(smtpd_milters) and coexist-policyd (check_policy_service, socketmap for
virtual_alias_maps) apply it.")
configure_file(${PROJECT_SOURCE_DIR}/contrib/debian/conffiles.in ${PROJECT_BINARY_DIR}/debian/conffiles @ONLY)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_BINARY_DIR}/debian/conffiles
    ${PROJECT_SOURCE_DIR}/contrib/debian/postinst
    ${PROJECT_SOURCE_DIR}/contrib/debian/prerm
    ${PROJECT_SOURCE_DIR}/contrib/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
