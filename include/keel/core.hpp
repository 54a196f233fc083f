// keel/core.hpp: every dependency-free keel module (target keel::core):
// result and errors, channels, lock-free primitives, SIMD byte search and
// backoff. <keel/keel.hpp> adds every optional module (target keel::keel).
#pragma once

#include <keel/backoff.hpp>
#include <keel/channel.hpp>
#include <keel/lockfree.hpp>
#include <keel/result.hpp>
#include <keel/simd.hpp>
