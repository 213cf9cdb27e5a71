// net/asio: the one place the Asio headers and the coroutine vocabulary are pulled in.
#pragma once

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>

namespace mma::net {

template <class T = void>
using Task = asio::awaitable<T>;

// Completion token for operations whose errors are values, not exceptions (STYLE.md §7).
constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

}  // namespace mma::net
