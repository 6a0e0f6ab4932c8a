// A 64-bit fingerprint of the values ds-load stores for a post, kept beside the row (posts.load_fp):
// a daily run reads 8 bytes per stored post to find what changed instead of reading the row back.
#pragma once
#include <cstdint>
#include <string_view>

#include "ds/clock.hpp"

namespace ds::load {

// The stored values a fingerprint covers: everything ds-load compares before deciding to write.
struct PostValues {
  std::string_view uri, did;
  std::int32_t likes = 0, replies = 0, quotes = 0, reposts = 0;
  Micros created_at = 0, sort_at = 0;
};

// Equal values always give equal fingerprints; different values give different ones except with
// probability about 2^-64 (not a cryptographic hash: the inputs are the API's, not an attacker's
// choice of collisions, and a collision costs one missed count update until the value moves again).
// The function is part of the stored data: changing it makes every stored fingerprint a mismatch,
// which is safe (those rows are compared by value and their fingerprints rewritten, once) but costs
// one slow daily run. tests/unit/load_test.cpp pins it.
std::int64_t post_fingerprint(const PostValues& p);

// A 64-bit fingerprint of a post's URI alone (posts.load_uri_fp): tells which stored row a changed
// post is without reading the row. A collision is caught by the update, which checks the URI.
std::int64_t uri_fingerprint(std::string_view uri);

}  // namespace ds::load
