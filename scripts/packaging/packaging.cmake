# The Debian package (CPack's DEB generator): the binary, the systemd unit, /etc/pgwarden's
# example settings, maintainer scripts and docs. scripts/package.sh builds it; see README.md,
# "Packaging and running as a service".
set(PGW_PKG_DIR ${PROJECT_SOURCE_DIR}/scripts/packaging)

install(TARGETS pgwarden RUNTIME DESTINATION bin)
# Absolute destinations: /etc and /lib are outside the /usr prefix.
install(FILES ${PGW_PKG_DIR}/pgwarden.service DESTINATION /lib/systemd/system)
install(FILES ${PGW_PKG_DIR}/pgwarden.env ${PROJECT_SOURCE_DIR}/policy/policy.example.json
        DESTINATION /etc/pgwarden)
install(FILES ${PGW_PKG_DIR}/copyright ${PROJECT_SOURCE_DIR}/README.md
              ${PROJECT_SOURCE_DIR}/recorder/FORMAT.md
        DESTINATION share/doc/pgwarden)
install(FILES ${PROJECT_SOURCE_DIR}/scripts/monitoring/pgwarden-alerts.yml
              ${PROJECT_SOURCE_DIR}/scripts/monitoring/pgwarden-dashboard.json
        DESTINATION share/pgwarden/monitoring)

# `cpack` installs without building everything first: package.sh builds the binary alone.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME pgwarden)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "identity-aware PostgreSQL gateway")
# CPack puts the summary first and indents these lines.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "pgwarden sits between clients and PostgreSQL: it authenticates callers (OIDC\ntokens, SCRAM), maps them to database roles, allows, denies or holds\nstatements for approval, masks PII in results and writes a tamper-evident\nrecording of every session.")
set(PGW_DEB_MAINTAINER "pgwarden maintainers <maintainers@users.noreply.b-seed-8d5c5074.example>"
    CACHE STRING "Maintainer field of the Debian package")
# Debian wants a changelog: one entry for this version, gzipped (SOURCE_DATE_EPOCH sets the date).
string(TIMESTAMP PGW_DEB_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
configure_file(${PGW_PKG_DIR}/changelog.Debian.in ${CMAKE_BINARY_DIR}/packaging/changelog.Debian @ONLY)
file(ARCHIVE_CREATE OUTPUT ${CMAKE_BINARY_DIR}/packaging/changelog.Debian.gz
     PATHS ${CMAKE_BINARY_DIR}/packaging/changelog.Debian FORMAT raw COMPRESSION GZip
     COMPRESSION_LEVEL 9)
install(FILES ${CMAKE_BINARY_DIR}/packaging/changelog.Debian.gz DESTINATION share/doc/pgwarden)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${PGW_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
# Shared-library dependencies from dpkg-shlibdeps (dpkg-dev); the maintainer scripts need passwd
# (useradd) and the unit systemd.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "prometheus")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${PGW_PKG_DIR}/conffiles;${PGW_PKG_DIR}/postinst;${PGW_PKG_DIR}/prerm;${PGW_PKG_DIR}/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Strip the binary (the build keeps its symbols).
set(CPACK_STRIP_FILES ON)
include(CPack)
