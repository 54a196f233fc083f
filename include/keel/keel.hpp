// keel/keel.hpp: every dependency-free keel module (target keel::core).
// The optional modules (json, log, sqlite, crypto, websocket) have their own
// headers and targets and are not included here.
#pragma once

#include <keel/backoff.hpp>
#include <keel/channel.hpp>
#include <keel/lockfree.hpp>
#include <keel/result.hpp>
#include <keel/simd.hpp>
