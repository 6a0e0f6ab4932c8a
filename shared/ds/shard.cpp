// Parsing shard specifications and deriving per-shard lock keys (see shard.hpp).
// Kept strict: a typo in --shard must not silently select the wrong users.
#include "ds/shard.hpp"

#include <charconv>

namespace ds {
namespace {

std::optional<std::uint32_t> parse_number(std::string_view s) {
  if (s.empty() || s.size() > 9) return std::nullopt;
  std::uint32_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

std::optional<Shard> parse_shard(std::string_view text) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const auto k = parse_number(text.substr(0, slash));
  const auto n = parse_number(text.substr(slash + 1));
  if (!k || !n || *n == 0 || *n > max_shards || *k >= *n) return std::nullopt;
  return Shard{*k, *n};
}

std::int64_t shard_lock_key(std::int64_t base, const std::optional<std::string>& label) {
  if (!label) return base;
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(base) ^ fnv1a64(*label));
}

}  // namespace ds
