// keel/asio/channel.hpp: moved. The channel's Boost.Asio adapter is now
// <keel/channel/asio.hpp> (target keel::asio). This forwarding header stays
// for one release.
#pragma once
#pragma message("<keel/asio/channel.hpp> is deprecated: include <keel/channel/asio.hpp> (target keel::asio)")

#include <keel/channel/asio.hpp>
