// Sharded runs: which shard a user belongs to (a stable hash of the DID) and the per-shard run
// lock key, shared by ds-select-users (selection) and ds-load (lock, run log). docs/operations.md.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ds {

// FNV-1a, 64 bit (Fowler/Noll/Vo): h = 0xcbf29ce484222325; for each byte b: h ^= b;
// h *= 0x100000001b3 (mod 2^64). The documented, language-independent assignment function.
constexpr std::uint64_t fnv1a64(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const char ch : bytes) {
    h ^= static_cast<unsigned char>(ch);
    h *= 0x100000001b3ULL;
  }
  return h;
}

// Shard K of N (0 <= K < N): the users whose fnv1a64(did bytes) mod N == K. For a fixed N a DID's
// shard never changes, the N shards are disjoint and together they are every user.
struct Shard {
  std::uint32_t index = 0;
  std::uint32_t count = 1;
  bool contains(std::string_view did) const { return fnv1a64(did) % count == index; }
  std::string label() const { return std::to_string(index) + "/" + std::to_string(count); }
};

constexpr std::uint32_t max_shards = 4096;

// Parses "K/N" (decimal, 0 <= K < N <= max_shards). nullopt for anything else.
std::optional<Shard> parse_shard(std::string_view text);

// The advisory-lock key of one shard's runs: `base` XOR fnv1a64(label), so shards lock
// independently of each other; no label (an unsharded run) keeps `base` itself.
std::int64_t shard_lock_key(std::int64_t base, const std::optional<std::string>& label);

}  // namespace ds
