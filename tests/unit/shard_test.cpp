// Tests for sharded runs: the documented DID hash (FNV-1a 64) against reference values computed
// outside this code, disjoint shards whose union is everything, --shard parsing, lock keys, and
// ds-select-users --shard on a real database.
#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "ds/pg.hpp"
#include "ds/shard.hpp"
#include "migrate/migrate.hpp"
#include "migrate/scratch_db.hpp"
#include "select_users.hpp"

namespace {

// DIDs of the shapes the users table holds: did:plc (24 base32 chars), did:web, odd lengths.
std::vector<std::string> sample_dids(int n) {
  std::vector<std::string> out;
  const char* alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  std::uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (int i = 0; i < n; ++i) {
    std::string did = i % 10 == 9 ? "did:web:host" + std::to_string(i) + ".example" : "did:plc:";
    if (i % 10 != 9)
      for (int j = 0; j < 24; ++j) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift: arbitrary but fixed test data
        did += alphabet[x % 32];
      }
    out.push_back(did);
  }
  return out;
}

}  // namespace

TEST_CASE("shard: FNV-1a 64 matches the reference vectors of the FNV specification", "[shard]") {
  // From the FNV test suite (draft-eastlake-fnv, isthe.com/chongo/tech/comp/fnv): FNV-1a 64.
  CHECK(ds::fnv1a64("") == 0xcbf29ce484222325ULL);
  CHECK(ds::fnv1a64("a") == 0xaf63dc4c8601ec8cULL);
  CHECK(ds::fnv1a64("foobar") == 0x85944171f73967e8ULL);
  // Bytes, not chars: a high byte must not be sign-extended before the XOR.
  CHECK(ds::fnv1a64("\xff") == ((0xcbf29ce484222325ULL ^ 0xffULL) * 0x100000001b3ULL));
}

TEST_CASE("shard: a DID's shard is fixed for a given N", "[shard]") {
  // Expected values computed with an independent implementation (Python, the definition in
  // docs/operations.md): fnv1a64(did) and its remainders mod 2, 3, 4, 7, 8.
  struct Case {
    const char* did;
    std::uint64_t hash;
    std::uint32_t mod2, mod3, mod4, mod7, mod8;
  };
  const Case cases[] = {
      {"did:plc:z72i7hdynmk6r22z27h6tvur", 0x013e63bf9e2bc0a7ULL, 1, 1, 3, 2, 7},
      {"did:plc:ewvi7nxzyoun6zhxrhs64oiz", 0xc63cc4ff4df209a9ULL, 1, 0, 1, 6, 1},
      {"did:web:example.com", 0xbc0e7c167013cf9dULL, 1, 0, 1, 4, 5},
      {"did:plc:aaaa", 0x47c7dbac49a838c5ULL, 1, 0, 1, 3, 5},
      {"did:plc:0000000000000000000001", 0x705115e24d025336ULL, 0, 2, 2, 3, 6},
  };
  for (const auto& c : cases) {
    INFO(c.did);
    CHECK(ds::fnv1a64(c.did) == c.hash);
    const std::pair<std::uint32_t, std::uint32_t> want[] = {{2, c.mod2}, {3, c.mod3}, {4, c.mod4}, {7, c.mod7}, {8, c.mod8}};
    for (const auto& [n, k] : want) {
      for (std::uint32_t i = 0; i < n; ++i) CHECK(ds::Shard{i, n}.contains(c.did) == (i == k));
    }
  }
}

TEST_CASE("shard: for N in 1..8 the shards are disjoint and together are every DID", "[shard]") {
  const auto dids = sample_dids(4000);
  for (std::uint32_t n = 1; n <= 8; ++n) {
    INFO("N = " << n);
    std::multiset<std::string> seen;
    std::vector<std::size_t> sizes(n, 0);
    for (std::uint32_t k = 0; k < n; ++k) {
      const ds::Shard shard{k, n};
      for (const auto& d : dids)
        if (shard.contains(d)) {
          seen.insert(d);
          ++sizes[k];
        }
    }
    CHECK(seen.size() == dids.size());  // no DID in two shards (multiset) ...
    CHECK(std::set<std::string>(dids.begin(), dids.end()) == std::set<std::string>(seen.begin(), seen.end()));  // ... none left out
    // The hash spreads users: no shard is empty or more than twice its fair share.
    for (std::uint32_t k = 0; k < n; ++k) {
      CHECK(sizes[k] > 0);
      CHECK(sizes[k] < 2 * dids.size() / n);
    }
  }
}

TEST_CASE("shard: --shard K/N parsing", "[shard]") {
  auto ok = [](const char* text, std::uint32_t k, std::uint32_t n) {
    INFO(text);
    const auto s = ds::parse_shard(text);
    REQUIRE(s);
    CHECK(s->index == k);
    CHECK(s->count == n);
    CHECK(s->label() == text);
  };
  ok("0/1", 0, 1);
  ok("0/4", 0, 4);
  ok("3/4", 3, 4);
  ok("4095/4096", 4095, 4096);
  for (const char* bad : {"", "4", "4/4", "5/4", "1/0", "0/0", "-1/4", "1/-4", "a/4", "1/4x", " 1/4", "1/ 4",
                          "1//4", "0/4097", "99999999999/4", "1/4/5", "+1/4"}) {
    INFO("'" << bad << "'");
    CHECK_FALSE(ds::parse_shard(bad));
  }
}

TEST_CASE("shard: each shard's run lock key is its own, an unsharded run keeps the base key", "[shard]") {
  constexpr std::int64_t base = 28274136601026916;  // ds-load's key, ASCII "ds-load"
  CHECK(ds::shard_lock_key(base, std::nullopt) == base);
  // base XOR fnv1a64("0/4") and ("1/4"), computed independently (Python), as signed bigint.
  CHECK(ds::shard_lock_key(base, std::string("0/4")) == 5652491651397487032LL);
  CHECK(ds::shard_lock_key(base, std::string("1/4")) == 5036350624008920131LL);
  std::set<std::int64_t> keys{base};
  for (std::uint32_t n = 1; n <= 8; ++n)
    for (std::uint32_t k = 0; k < n; ++k) keys.insert(ds::shard_lock_key(base, ds::Shard{k, n}.label()));
  CHECK(keys.size() == 1 + 36);  // all different
}

TEST_CASE("ds-select-users names its shard in the stream's selection record, null when unsharded", "[shard]") {
  ds::select_users::Options o;
  CHECK_FALSE(ds::select_users::selection_record(o).shard.has_value());
  o.shard = ds::Shard{2, 4};
  CHECK(ds::select_users::selection_record(o).shard == "2/4");
}

TEST_CASE("ds-select-users --shard: the shards' selections partition the unsharded one", "[db][shard]") {
  const auto url = ds::testing::test_database_url();
  if (!url) FAIL("DS_TEST_DATABASE_URL is not set: run [db] tests under tests/scripts/with-pg.sh");
  ds::testing::ScratchDatabase db(*url, "ds_test_shard_select");
  ds::PgConnection c(db.params());
  ds::migrate::apply(c, ds::migrate::embedded_migrations());
  // 300 users, every 7th skip_user, every 3rd without a recent view.
  const auto dids = sample_dids(300);
  for (std::size_t i = 0; i < dids.size(); ++i) {
    c.exec("INSERT INTO users (did, handle, skip_user) VALUES ($1, $2, $3)",
           {dids[i], "h" + std::to_string(i) + ".test", i % 7 == 0 ? "true" : "false"});
    c.exec("INSERT INTO views (did, date) VALUES ($1, $2::date)", {dids[i], i % 3 == 0 ? "2026-01-01" : "2026-11-28"});
  }

  for (const auto mode : {ds::select_users::Mode::active, ds::select_users::Mode::all, ds::select_users::Mode::dids}) {
    ds::select_users::Options o;
    o.mode = mode;
    o.as_of = *ds::parse_timestamp("2026-11-29T06:00:00Z");
    o.fetch_rows = 37;
    if (mode == ds::select_users::Mode::dids) o.dids = {dids[1], dids[2], dids[4], dids[7], "did:plc:nobody", dids[200]};
    std::vector<std::string> whole;
    const auto all_k = ds::select_users::select(c, o, [&](const ds::UserRecord& u) { whole.push_back(u.did); });
    REQUIRE(!whole.empty());
    const auto unsharded_end = ds::select_users::end_record(all_k, 0);
    CHECK(std::none_of(unsharded_end.counters.begin(), unsharded_end.counters.end(),
                       [](const auto& kv) { return kv.first == "other_shards"; }));  // unchanged shape

    for (std::uint32_t n : {1u, 3u, 4u}) {
      INFO("mode " << static_cast<int>(mode) << ", N = " << n);
      std::vector<std::string> united;
      std::int64_t skipped = 0, missing = 0, other = 0;
      for (std::uint32_t k = 0; k < n; ++k) {
        o.shard = ds::Shard{k, n};
        std::vector<std::string> part;
        const auto counters = ds::select_users::select(c, o, [&](const ds::UserRecord& u) { part.push_back(u.did); });
        for (const auto& d : part) CHECK(ds::fnv1a64(d) % n == k);
        CHECK(counters.users == static_cast<std::int64_t>(part.size()));
        skipped += counters.skipped;
        missing += counters.missing;
        other += counters.other_shards;
        CHECK(ds::select_users::end_record(counters, 0).counter("other_shards") == counters.other_shards);
        united.insert(united.end(), part.begin(), part.end());
      }
      o.shard.reset();
      std::sort(united.begin(), united.end());
      CHECK(united == whole);  // whole is in did order, each DID once
      CHECK(skipped == all_k.skipped);
      CHECK(missing == all_k.missing);
      // Each matching row is someone's: counted as another shard's by the N-1 others.
      if (mode == ds::select_users::Mode::dids)
        CHECK(other == static_cast<std::int64_t>(n - 1) * 6);  // 6 distinct requested DIDs
      else
        CHECK(other == static_cast<std::int64_t>(n - 1) * (all_k.users + all_k.skipped));
    }
  }
}
