// keel/keel.hpp: every keel module (target keel::keel, which links them all).
// A program that uses one module includes that module's header and links its
// target instead; <keel/core.hpp> is the dependency-free core alone.
#pragma once

#include <keel/channel/asio.hpp>
#include <keel/core.hpp>
#include <keel/crypto.hpp>
#include <keel/json.hpp>
#include <keel/log.hpp>
#include <keel/postgres.hpp>
#include <keel/sqlite.hpp>
#include <keel/vault.hpp>
#include <keel/vault/postgres.hpp>
#include <keel/websocket.hpp>
