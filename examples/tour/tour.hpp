// The sections of keel-tour, one per module (examples/tour/<module>.cpp).
// Each prints what it shows and returns false if something went wrong.
#pragma once

namespace tour {
bool result();
bool channel();
bool lockfree();
bool simd();
bool sqlite();
bool postgres();
bool crypto();
bool websocket();
}  // namespace tour
