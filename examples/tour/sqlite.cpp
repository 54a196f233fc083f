#include <fmt/format.h>

#include "tour.hpp"

// Filled in when the sqlite module lands (see its issue).
bool tour::sqlite() {
  fmt::print("coming: keel::sqlite is not built yet\n");
  return true;
}
