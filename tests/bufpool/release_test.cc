// Tests for giving memory back (release.c, "giving memory back"):
// bp_pool_thread_trim and bp_pool_release_idle. Each checks what the
// system sees (resident pages by mincore and /proc/self/statm), not only
// the counters, so a release that did nothing fails; and that blocks in
// use keep their bytes and released blocks work when handed out again.
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "bufpool/bufpool.h"
#include "bp_test_util.h"

using bptest::Pool;

namespace {

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));
const size_t kMiB = size_t{1} << 20;
const size_t kBig = 65536 - BP_BLOCK_HDR;  // capacity of a 64 KiB block
const size_t kSmall = 4096 - BP_BLOCK_HDR; // capacity of a 4 KiB block

// Resident bytes of the process (/proc/self/statm), or 0 if unknown.
size_t Rss() {
  FILE *f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * kPage : 0;
}

// Resident pages among the whole pages inside [p, p + n).
size_t ResidentPages(const void *p, size_t n) {
  uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + kPage - 1) & ~(kPage - 1);
  uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + n) & ~(kPage - 1);
  if (hi <= lo) return 0;
  std::vector<unsigned char> vec((hi - lo) / kPage);
  if (mincore(reinterpret_cast<void *>(lo), hi - lo, vec.data()) != 0) {
    ADD_FAILURE() << "mincore: " << std::strerror(errno);
    return 0;
  }
  size_t r = 0;
  for (unsigned char v : vec) r += v & 1u;
  return r;
}

// Whole pages inside [p, p + n).
size_t WholePages(const void *p, size_t n) {
  uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + kPage - 1) & ~(kPage - 1);
  uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + n) & ~(kPage - 1);
  return hi > lo ? (hi - lo) / kPage : 0;
}

// The bytes a block holding `seed` carries (whole capacity).
void Fill(bp_block *b, uint32_t seed) {
  char *d = bp_block_data(b);
  size_t cap = bp_block_cap(b);
  for (size_t i = 0; i < cap; i += 64) d[i] = static_cast<char>(seed + i / 64);
  std::memcpy(d, &seed, sizeof seed);
  std::memcpy(d + cap - sizeof seed, &seed, sizeof seed);
}

bool Holds(bp_block *b, uint32_t seed) {
  const char *d = bp_block_data(b);
  size_t cap = bp_block_cap(b);
  uint32_t head, tail;
  std::memcpy(&head, d, sizeof head);
  std::memcpy(&tail, d + cap - sizeof tail, sizeof tail);
  if (head != seed || tail != seed) return false;
  for (size_t i = 64; i + sizeof tail < cap; i += 64)
    if (d[i] != static_cast<char>(seed + i / 64)) return false;
  return true;
}

// Resident memory fell by at least `want` bytes between two Rss() calls.
void ExpectRssDrop(size_t before, size_t after, size_t want) {
  ASSERT_GT(before, 0u) << "no /proc/self/statm";
  EXPECT_GE(before - std::min(before, after), want) << before << " -> " << after;
}

// charged = carved blocks (in use or cached) when there are no huge blocks.
void ExpectChargeConsistent(const bp_stats &s) {
  EXPECT_EQ(s.charged_bytes, s.bytes_in_use + s.bytes_cached)
      << "in use " << s.bytes_in_use << " cached " << s.bytes_cached;
  EXPECT_LE(s.charged_bytes, s.sys_bytes);
}

TEST(ThreadTrim, GivesTheCacheToTheDepotAndKeepsIt) {
  Pool pool;
  bp_block *b = bp_block_get(pool, kBig);
  ASSERT_NE(b, nullptr);
  std::memset(bp_block_data(b), 0x11, bp_block_cap(b));
  bp_block_unref(b);  // a 64 KiB batch is one block: it stays in this cache
  bp_stats s0 = pool.stats();
  // Only depot blocks are released: the cached block is not.
  EXPECT_EQ(bp_pool_release_idle(pool), 0u);
  bp_pool_thread_trim(pool);
  bp_stats s1 = pool.stats();
  EXPECT_EQ(s1.trims, s0.trims + 1);
  EXPECT_EQ(s1.bytes_cached, s0.bytes_cached);
  EXPECT_EQ(s1.charged_bytes, s0.charged_bytes);
  EXPECT_EQ(s1.sys_free_calls, s0.sys_free_calls);  // the cache is kept
  // From the depot now: the whole region (this one block) goes back.
  EXPECT_GE(bp_pool_release_idle(pool), 15 * kPage);
  // The next get misses the emptied cache but needs no malloc or mmap.
  bp_stats s2 = pool.stats();
  b = bp_block_get(pool, kBig);
  ASSERT_NE(b, nullptr);
  Fill(b, 7);
  EXPECT_TRUE(Holds(b, 7));
  bp_block_unref(b);
  bp_stats s3 = pool.stats();
  EXPECT_EQ(s3.pool_misses, s2.pool_misses + 1);
  EXPECT_EQ(s3.sys_alloc_calls, s2.sys_alloc_calls);
  // A thread without a cache of this pool: counted, nothing else.
  std::thread([&] { bp_pool_thread_trim(pool); }).join();
  EXPECT_EQ(pool.stats().trims, s3.trims + 1);
}

// 64 MiB of 64 KiB blocks, every 16th kept in use: no region is wholly
// free, so each free block gives back the pages past its first 32 bytes.
TEST(ReleaseIdle, LargeFreeBlocksGiveBackTheirPagesAroundBlocksInUse) {
  Pool pool;
  const size_t n = 64 * kMiB / 65536;
  std::vector<bp_block *> blocks(n);
  for (size_t i = 0; i < n; i++) {
    blocks[i] = bp_block_get(pool, kBig);
    ASSERT_NE(blocks[i], nullptr) << i;
    Fill(blocks[i], static_cast<uint32_t>(i));
  }
  std::vector<bp_block *> kept, freed;
  auto in_use = [&](size_t i) { return i % 16 == 0 || i == n - 1; };  // in every region
  for (size_t i = 0; i < n; i++) (in_use(i) ? kept : freed).push_back(blocks[i]);
  for (bp_block *b : freed) bp_block_unref(b);
  bp_pool_thread_trim(pool);
  bp_stats s0 = pool.stats();
  size_t rss0 = Rss();
  size_t got = bp_pool_release_idle(pool);
  size_t rss1 = Rss();
  bp_stats s1 = pool.stats();

  const size_t freed_bytes = freed.size() * 65536;
  EXPECT_GE(got, freed_bytes / 16 * 14) << "a 64 KiB block has 15 pages to give";
  EXPECT_LE(got, freed_bytes);
  EXPECT_EQ(s1.released_bytes, s0.released_bytes + got);
  EXPECT_EQ(s1.release_calls, s0.release_calls + 1);
  EXPECT_GE(s1.sys_free_calls, s0.sys_free_calls + freed.size() / 2);
  // The blocks stay carved (and charged), only their pages went.
  EXPECT_EQ(s1.charged_bytes, s0.charged_bytes);
  EXPECT_EQ(s1.bytes_cached, s0.bytes_cached);
  EXPECT_EQ(s1.sys_bytes, s0.sys_bytes);
  ExpectChargeConsistent(s1);
  ExpectRssDrop(rss0, rss1, got / 2);
  for (bp_block *b : freed)
    EXPECT_EQ(ResidentPages(bp_block_data(b) + 32, 65536 - 40), 0u);
  // Blocks in use are untouched: resident and as written.
  for (size_t i = 0; i < n; i++) {
    if (!in_use(i)) continue;
    EXPECT_EQ(ResidentPages(bp_block_data(blocks[i]), kBig),
              WholePages(bp_block_data(blocks[i]), kBig)) << i;
    EXPECT_TRUE(Holds(blocks[i], static_cast<uint32_t>(i))) << i;
  }
  // Nothing resident is left to give: a second call gives nothing.
  EXPECT_EQ(bp_pool_release_idle(pool), 0u);
  // The freed blocks come back from the depot and work.
  std::vector<bp_block *> again;
  for (size_t i = 0; i < freed.size(); i++) {
    bp_block *b = bp_block_get(pool, kBig);
    ASSERT_NE(b, nullptr);
    Fill(b, static_cast<uint32_t>(100000 + i));
    again.push_back(b);
  }
  EXPECT_EQ(pool.stats().sys_alloc_calls, s1.sys_alloc_calls);
  for (size_t i = 0; i < again.size(); i++) {
    EXPECT_TRUE(Holds(again[i], static_cast<uint32_t>(100000 + i))) << i;
    bp_block_unref(again[i]);
  }
  for (bp_block *b : kept) {
    size_t i = static_cast<size_t>(std::find(blocks.begin(), blocks.end(), b) - blocks.begin());
    EXPECT_TRUE(Holds(b, static_cast<uint32_t>(i))) << i;
    bp_block_unref(b);
  }
}

// 64 MiB of 4 KiB blocks, the first 64 kept: a 4 KiB block has no whole
// page of its own to give, so they go back with their regions, all but
// the first region (which holds the blocks in use).
TEST(ReleaseIdle, SmallBlocksGoBackWithTheirWholeRegion) {
  Pool pool;
  const size_t n = 64 * kMiB / 4096;
  std::vector<bp_block *> blocks(n);
  for (size_t i = 0; i < n; i++) {
    blocks[i] = bp_block_get(pool, kSmall);
    ASSERT_NE(blocks[i], nullptr) << i;
    Fill(blocks[i], static_cast<uint32_t>(i));
  }
  const size_t keep = 64;
  for (size_t i = keep; i < n; i++) bp_block_unref(blocks[i]);
  bp_pool_thread_trim(pool);
  bp_stats s0 = pool.stats();
  size_t rss0 = Rss();
  size_t got = bp_pool_release_idle(pool);
  size_t rss1 = Rss();
  bp_stats s1 = pool.stats();

  EXPECT_GE(got, 60 * kMiB);
  EXPECT_EQ(s1.released_bytes, s0.released_bytes + got);
  ExpectRssDrop(rss0, rss1, got / 2);
  // Uncarved: no longer charged nor cached; still mapped for later.
  EXPECT_LE(s1.charged_bytes, 2 * kMiB);
  EXPECT_LT(s1.bytes_cached, 2 * kMiB);
  EXPECT_EQ(s1.bytes_in_use, keep * 4096);
  EXPECT_EQ(s1.sys_bytes, s0.sys_bytes);
  ExpectChargeConsistent(s1);
  bp_class_stats cs;
  ASSERT_EQ(bp_pool_class_stats(pool, bp_class_of(kSmall), &cs), 0);
  EXPECT_LT(cs.carved, 2 * kMiB / 4096);
  EXPECT_GE(cs.carved, keep);
  size_t resident = 0;
  for (size_t i = 4 * 512; i < n; i++) resident += ResidentPages(bp_block_data(blocks[i]), kSmall);
  EXPECT_EQ(resident, 0u) << "pages of freed 4 KiB blocks past the first regions";
  for (size_t i = 0; i < keep; i++) EXPECT_TRUE(Holds(blocks[i], static_cast<uint32_t>(i))) << i;
  // Carving again reuses the given-back regions: no mmap.
  for (size_t i = keep; i < n; i++) {
    blocks[i] = bp_block_get(pool, kSmall);
    ASSERT_NE(blocks[i], nullptr) << i;
    Fill(blocks[i], static_cast<uint32_t>(i * 3));
  }
  bp_stats s2 = pool.stats();
  EXPECT_EQ(s2.sys_alloc_calls, s1.sys_alloc_calls);
  EXPECT_EQ(s2.sys_bytes, s1.sys_bytes);
  ExpectChargeConsistent(s2);
  for (size_t i = 0; i < n; i++) {
    EXPECT_TRUE(Holds(blocks[i], static_cast<uint32_t>(i < keep ? i : i * 3))) << i;
    bp_block_unref(blocks[i]);
  }
}

// The case: a burst of 64 MiB in 64 KiB and 4 KiB blocks, all put
// back: nearly all of it goes back, and resident memory drops with it.
TEST(ReleaseIdle, AfterABurstNearlyEverythingGoesBack) {
  Pool pool;
  std::vector<bp_block *> v;
  for (size_t i = 0; i < 512; i++) {  // 32 MiB of each, interleaved
    bp_block *b = bp_block_get(pool, kBig);
    ASSERT_NE(b, nullptr);
    std::memset(bp_block_data(b), 1, bp_block_cap(b));
    v.push_back(b);
    for (int k = 0; k < 16; k++) {
      b = bp_block_get(pool, kSmall);
      ASSERT_NE(b, nullptr);
      std::memset(bp_block_data(b), 2, bp_block_cap(b));
      v.push_back(b);
    }
  }
  for (bp_block *b : v) bp_block_unref(b);
  size_t rss0 = Rss();
  size_t first = bp_pool_release_idle(pool);  // all but what this thread caches
  bp_pool_thread_trim(pool);
  size_t got = bp_pool_release_idle(pool);
  size_t rss1 = Rss();
  bp_stats s = pool.stats();
  EXPECT_GE(s.released_bytes, 62 * kMiB);
  EXPECT_LE(s.released_bytes, 66 * kMiB);
  EXPECT_GT(got, 0u) << "the pages of the blocks this thread had cached";
  EXPECT_EQ(first + got, s.released_bytes);
  EXPECT_EQ(s.charged_bytes, 0u) << "every region was free";
  EXPECT_EQ(s.bytes_cached, 0u);
  ExpectChargeConsistent(s);
  ExpectRssDrop(rss0, rss1, s.released_bytes * 3 / 4);
  EXPECT_EQ(bp_pool_release_idle(pool), 0u);
  // And it grows again as before, from the same mappings.
  bp_stats s1 = pool.stats();
  for (size_t i = 0; i < v.size(); i++) {
    bp_block *&b = v[i];
    b = bp_block_get(pool, i % 17 == 0 ? kBig : kSmall);
    ASSERT_NE(b, nullptr);
    Fill(b, 9);
  }
  for (bp_block *b : v) {
    EXPECT_TRUE(Holds(b, 9));
    bp_block_unref(b);
  }
  EXPECT_EQ(pool.stats().sys_alloc_calls, s1.sys_alloc_calls);
}

// Regions given back whole are uncharged: under a limit, memory carved
// for one class becomes available to another (slab calcification).
TEST(ReleaseIdle, UnchargedRegionsServeOtherClassesUnderTheLimit) {
  Pool pool(8 * kMiB);
  std::vector<bp_block *> v;
  while (bp_block *b = bp_block_get(pool, 100)) v.push_back(b);
  ASSERT_GT(v.size(), 8 * kMiB / 128 * 9 / 10);
  for (bp_block *b : v) bp_block_unref(b);
  EXPECT_EQ(bp_block_get(pool, kBig), nullptr) << "the limit is held by 112 B blocks";
  bp_pool_thread_trim(pool);
  bp_pool_release_idle(pool);
  EXPECT_EQ(pool.stats().charged_bytes, 0u);
  v.clear();
  while (bp_block *b = bp_block_get(pool, kBig)) v.push_back(b);
  EXPECT_GE(v.size(), 8 * kMiB / 65536 - 4);
  EXPECT_LE(pool.stats().charged_bytes, 8 * kMiB);
  for (bp_block *b : v) bp_block_unref(b);
}

// A block that was in the depot at some release and was handed out since
// must never be taken for a depot block again, however many releases
// follow (the release stamps depot blocks with one of 255 marks).
TEST(ReleaseIdle, OldStampsNeverPassForNewOnes) {
  Pool pool;
  bp_block *pin = bp_block_get(pool, kSmall);  // keeps the region carved
  ASSERT_NE(pin, nullptr);
  bp_block *big = bp_block_get(pool, kBig);
  ASSERT_NE(big, nullptr);
  bp_block *cached[2];  // the thread cache keeps 2 of this class; fill it
  for (bp_block *&b : cached) b = bp_block_get(pool, kBig);
  Fill(big, 1);  // resident
  bp_block_unref(big);
  bp_pool_thread_trim(pool);  // big goes to the depot, ...
  EXPECT_GT(bp_pool_release_idle(pool), 0u);  // ... is stamped, released
  bp_block *again = bp_block_get(pool, kBig);
  ASSERT_EQ(again, big) << "the depot's only 64 KiB block";
  Fill(again, 42);
  for (int i = 0; i < 600; i++) {
    bp_block_unref(bp_block_get(pool, 100));  // the depot changes ...
    bp_pool_thread_trim(pool);
    bp_pool_release_idle(pool);  // ... so each call walks and stamps
  }
  EXPECT_EQ(pool.stats().release_calls, 601u);
  EXPECT_TRUE(Holds(again, 42));
  EXPECT_EQ(ResidentPages(bp_block_data(again), kBig), WholePages(bp_block_data(again), kBig));
  bp_block_unref(again);
  for (bp_block *b : cached) bp_block_unref(b);
  bp_block_unref(pin);
}

// Releases while other threads get, write, check and put blocks of many
// sizes and trim their caches: nobody's bytes change under them. (For
// ASan and TSan: the release reads headers of blocks in use.)
TEST(ReleaseIdle, ConcurrentWithGetsPutsAndTrims) {
  Pool pool;
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 3; t++) {
    workers.emplace_back([&, t] {
      const size_t caps[] = {24, 500, kSmall, 10000, kBig, 200000};
      std::vector<std::pair<bp_block *, uint32_t>> held;
      uint32_t seed = static_cast<uint32_t>(t) << 24;
      for (int round = 0; !stop.load(std::memory_order_relaxed) || round < 50; round++) {
        for (int k = 0; k < 64; k++) {
          bp_block *b = bp_block_get(pool, caps[(round + k) % 6]);
          if (!b) {
            bad++;
            continue;
          }
          Fill(b, ++seed);
          held.emplace_back(b, seed);
        }
        for (auto &h : held) {
          if (!Holds(h.first, h.second)) bad++;
          bp_block_unref(h.first);
        }
        held.clear();
        if (round % 7 == 0) bp_pool_thread_trim(pool);
      }
      bp_pool_thread_flush(pool);
    });
  }
  size_t calls = 0;
  for (; calls < 300; calls++) {  // past 255 stamps
    bp_pool_release_idle(pool);
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  stop = true;
  for (auto &w : workers) w.join();
  EXPECT_EQ(bad.load(), 0);
  bp_stats s = pool.stats();
  EXPECT_EQ(s.release_calls, calls);
  EXPECT_EQ(s.blocks_in_use, 0u);
  ExpectChargeConsistent(s);
  bp_pool_release_idle(pool);
  ExpectChargeConsistent(pool.stats());
}

// The figures of docs/bufpool.md ("Giving memory back"): for pools of
// blocks of one size, some kept in use, what one release gives back and
// how long it holds the pool's lock. Not a check; run it in a Release
// build:
//   build/tests/bufpool/bufpool_test --gtest_filter='*ReleaseCost*'
//       --gtest_also_run_disabled_tests   (one command line)
TEST(ReleaseIdle, DISABLED_ReleaseCost) {
  struct Case {
    const char *what;
    size_t cap, total, keep_every;
  } cases[] = {
      {"64 KiB blocks, all free", kBig, 64 * kMiB, 0},
      {"64 KiB blocks, 1 in 16 in use", kBig, 64 * kMiB, 16},
      {"4 KiB blocks, all free", kSmall, 64 * kMiB, 0},
      {"4 KiB blocks, 1 in 512 in use", kSmall, 64 * kMiB, 512},
      {"32 B blocks, all free", 24, 64 * kMiB, 0},
      {"32 B blocks, 1 in 100000 in use", 24, 64 * kMiB, 100000},
      {"4 KiB blocks (1 GiB), 1 in 600 in use", kSmall, 1024 * kMiB, 600},
  };
  for (const Case &c : cases) {
    Pool pool;
    size_t n = c.total / bp_block_charge(c.cap);
    std::vector<bp_block *> v(n);
    for (size_t i = 0; i < n; i++) {
      v[i] = bp_block_get(pool, c.cap);
      ASSERT_NE(v[i], nullptr);
      std::memset(bp_block_data(v[i]), 1, bp_block_cap(v[i]));
    }
    for (size_t i = 0; i < n; i++) {
      if (!c.keep_every || i % c.keep_every) {
        bp_block_unref(v[i]);
        v[i] = nullptr;
      }
    }
    bp_pool_thread_trim(pool);
    size_t rss0 = Rss();
    auto t0 = std::chrono::steady_clock::now();
    size_t got = bp_pool_release_idle(pool);
    auto t1 = std::chrono::steady_clock::now();
    size_t rss1 = Rss();
    auto t2 = std::chrono::steady_clock::now();
    bp_pool_release_idle(pool);
    auto t3 = std::chrono::steady_clock::now();
    auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    std::printf("%-40s released %7.1f MiB, RSS %7.1f -> %7.1f MiB, %7.2f ms (again: %.3f ms)\n",
                c.what, got / 1048576.0, rss0 / 1048576.0, rss1 / 1048576.0, ms(t0, t1),
                ms(t2, t3));
    for (bp_block *b : v) bp_block_unref(b);
  }
}

}  // namespace
