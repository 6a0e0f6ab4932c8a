// The fingerprint of a post's stored values: 64-bit words mixed by multiply and xor-shift, then a
// final avalanche, so every input bit reaches every output bit.
#include "post_fingerprint.hpp"

#include <cstring>

namespace ds::load {
namespace {

constexpr std::uint64_t mul1 = 0x9e3779b97f4a7c15ULL;  // odd constants with well-spread bits
constexpr std::uint64_t mul2 = 0xbf58476d1ce4e5b9ULL;
constexpr std::uint64_t mul3 = 0x94d049bb133111ebULL;

std::uint64_t absorb(std::uint64_t h, std::uint64_t word) {
  h = (h ^ word) * mul1;
  return h ^ (h >> 29);
}

// Bytes in 8-byte little-endian words (the last one zero-padded), then the length, so "ab" + "c"
// and "a" + "bc" differ.
std::uint64_t absorb_bytes(std::uint64_t h, std::string_view s) {
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    std::uint64_t w = 0;
    for (std::size_t b = 0; b < 8; ++b) w |= std::uint64_t(static_cast<unsigned char>(s[i + b])) << (8 * b);
    h = absorb(h, w);
  }
  std::uint64_t tail = 0;
  for (std::size_t b = 0; i + b < s.size(); ++b) tail |= std::uint64_t(static_cast<unsigned char>(s[i + b])) << (8 * b);
  h = absorb(h, tail);
  return absorb(h, s.size());
}

std::uint64_t pair(std::int32_t lo, std::int32_t hi) {
  return std::uint64_t(static_cast<std::uint32_t>(lo)) | (std::uint64_t(static_cast<std::uint32_t>(hi)) << 32);
}

// Final avalanche (the splitmix64 finisher's structure).
std::int64_t finish(std::uint64_t h) {
  h = (h ^ (h >> 30)) * mul2;
  h = (h ^ (h >> 27)) * mul3;
  h ^= h >> 31;
  std::int64_t out;
  std::memcpy(&out, &h, sizeof out);
  return out;
}

}  // namespace

std::int64_t post_fingerprint(const PostValues& p) {
  std::uint64_t h = 0x6473206c6f616400ULL;  // "ds load": any fixed start
  h = absorb_bytes(h, p.uri);
  h = absorb_bytes(h, p.did);
  h = absorb(h, pair(p.likes, p.replies));
  h = absorb(h, pair(p.quotes, p.reposts));
  h = absorb(h, static_cast<std::uint64_t>(p.created_at));
  h = absorb(h, static_cast<std::uint64_t>(p.sort_at));
  return finish(h);
}

std::int64_t uri_fingerprint(std::string_view uri) {
  return finish(absorb_bytes(0x6473207572690000ULL, uri));  // "ds uri": another start than the above
}

}  // namespace ds::load
