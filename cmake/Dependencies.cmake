# Every dependency comes from Debian 12 packages (scripts/bootstrap installs them).
# See ../shared/STACK.md for the probe behind each line.
find_package(Threads REQUIRED)

# The pure protocol library (src/smtp) needs nothing; the fuzz build stops here.
if(MMA_FUZZ)
  return()
endif()

find_path(ASIO_INCLUDE_DIR asio.hpp REQUIRED)
add_library(asio INTERFACE)
target_include_directories(asio SYSTEM INTERFACE ${ASIO_INCLUDE_DIR})
target_compile_definitions(asio INTERFACE ASIO_STANDALONE ASIO_NO_DEPRECATED)
target_link_libraries(asio INTERFACE Threads::Threads)

find_package(OpenSSL 3 REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(RocksDB CONFIG REQUIRED)
# libunbound's .pc needs libevent-dev installed (../shared/STACK.md, pitfall 1).
pkg_check_modules(UNBOUND REQUIRED IMPORTED_TARGET libunbound)
if(MMA_TCMALLOC AND NOT MMA_SANITIZE AND NOT MMA_FUZZ)
  pkg_check_modules(TCMALLOC REQUIRED IMPORTED_TARGET libtcmalloc_minimal)
endif()
find_package(tomlplusplus CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)
find_package(fmt CONFIG REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
# The composer's recipient sources: SQLite (the embedded default) and PostgreSQL (libpq).
find_package(SQLite3 REQUIRED)
find_package(PostgreSQL REQUIRED)
if(MMA_TESTS)
  find_package(GTest CONFIG REQUIRED)
endif()
if(MMA_BENCH)
  find_package(benchmark CONFIG REQUIRED)
endif()
