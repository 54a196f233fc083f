// The one compiled Catch2 main every keel test links (built once).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
