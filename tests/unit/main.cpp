// Catch2 entry point for ds-unit-tests: unit tests, plus [db] tests that need DS_TEST_DATABASE_URL
// (set by tests/scripts/with-pg.sh, which starts a private PostgreSQL cluster).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
