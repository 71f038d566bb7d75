// Tests for bufpool/pool.c: size classes, blocks and their refcounts, huge
// (mmap) blocks, thread caches (cross-thread free, thread exit), the memory
// limit, and the warm-pool "no system allocation" claim.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "bufpool/bufpool.h"
#include "bp_test_util.h"

using bptest::Pool;

namespace {

constexpr size_t kMaxClassCap = BP_MAX_CLASS_SIZE - BP_BLOCK_HDR;

// ---------------------------------------------------------------------------
// Size classes
// ---------------------------------------------------------------------------

TEST(SizeClasses, StrictlyIncreasingMultiplesOf16EndingAtTheCap) {
  int n = bp_class_count();
  ASSERT_GT(n, 1);
  for (int i = 0; i < n; i++) {
    size_t s = bp_class_size(i);
    EXPECT_EQ(s % 16, 0u) << "class " << i << " size " << s;
    EXPECT_GT(s, BP_BLOCK_HDR) << "class " << i << " has no capacity";
    if (i > 0) {
      EXPECT_GT(s, bp_class_size(i - 1)) << "class " << i;
    }
  }
  // Blocks whose total size exceeds BP_MAX_CLASS_SIZE come from mmap, so a
  // block of exactly that total size must come from a class.
  EXPECT_EQ(bp_class_size(n - 1), BP_MAX_CLASS_SIZE);
}

TEST(SizeClasses, EveryCapMapsToTheSmallestFittingClass) {
  const int n = bp_class_count();
  ASSERT_GT(n, 0);
  std::vector<size_t> sizes(n);
  for (int i = 0; i < n; i++) sizes[i] = bp_class_size(i);
  size_t mismatches = 0;
  for (size_t cap = 0; cap <= BP_MAX_CLASS_SIZE; cap++) {
    int want = -1;
    for (int i = 0; i < n; i++) {  // linear scan: the definition
      if (sizes[i] - BP_BLOCK_HDR >= cap) {
        want = i;
        break;
      }
    }
    int got = bp_class_of(cap);
    if (got != want && mismatches++ < 10)
      ADD_FAILURE() << "bp_class_of(" << cap << ") = " << got << ", want " << want;
  }
  EXPECT_EQ(mismatches, 0u);
  EXPECT_EQ(bp_class_of(kMaxClassCap), n - 1);
  EXPECT_EQ(bp_class_of(kMaxClassCap + 1), -1);
  EXPECT_EQ(bp_class_of(0), 0);
}

TEST(SizeClasses, HugeAndOverflowingCapsNeedMmap) {
  // cap + header must not wrap around into a small class.
  EXPECT_EQ(bp_class_of(SIZE_MAX), -1);
  EXPECT_EQ(bp_class_of(SIZE_MAX - BP_BLOCK_HDR + 1), -1);
  EXPECT_EQ(bp_class_of(SIZE_MAX - 3), -1);
  EXPECT_EQ(bp_class_of(size_t{1} << 40), -1);
}

// Waste (unused bytes of the block) is at most 25% of the block for every
// cap >= 24. Classes are multiples of 16, so below 64 bytes the bound is
// unattainable for some caps (cap 25 needs a 33-byte block, the next
// multiple of 16 is 48: 15/48 = 31%); there the class must be the tightest
// the 16-byte granularity allows.
TEST(SizeClasses, WasteAtMostAQuarterOfTheBlock) {
  size_t worst_cap = 0;
  double worst = 0;
  for (size_t cap = 24; cap <= kMaxClassCap; cap++) {
    int cls = bp_class_of(cap);
    ASSERT_GE(cls, 0) << cap;
    size_t s = bp_class_size(cls);
    ASSERT_GE(s, cap + BP_BLOCK_HDR) << cap;
    size_t waste = s - BP_BLOCK_HDR - cap;
    size_t tightest = (cap + BP_BLOCK_HDR + 15) / 16 * 16;
    if (waste * 4 > s) {
      ASSERT_EQ(s, tightest) << "cap " << cap << " class size " << s << " wastes "
                             << waste << " bytes (> 25%)";
    }
    double w = double(waste) / double(s);
    if (s >= 64 && w > worst) {
      worst = w;
      worst_cap = cap;
    }
  }
  EXPECT_LE(worst, 0.25) << "worst cap " << worst_cap;
}

// ---------------------------------------------------------------------------
// Blocks and refcounts
// ---------------------------------------------------------------------------

TEST(Blocks, GetGivesTheClassCapacityAndRefcountOne) {
  Pool pool;
  const size_t caps[] = {0, 1, 8, 24, 100, 1000, 4096, 65536, kMaxClassCap};
  for (size_t cap : caps) {
    bp_block *b = bp_block_get(pool, cap);
    ASSERT_NE(b, nullptr) << cap;
    EXPECT_EQ(bp_block_refs(b), 1u);
    EXPECT_GE(bp_block_cap(b), cap);
    EXPECT_EQ(bp_block_cap(b), bptest::ClassSizeFor(cap) - BP_BLOCK_HDR) << cap;
    EXPECT_EQ(bp_block_of(bp_block_data(b)), b);
    std::memset(bp_block_data(b), 0x5A, bp_block_cap(b));  // all of it is ours
    bp_block_unref(b);
  }
  bp_stats s = pool.stats();
  EXPECT_EQ(s.blocks_in_use, 0u);
  EXPECT_EQ(s.block_gets, std::size(caps));
  EXPECT_EQ(s.block_puts, std::size(caps));
  EXPECT_EQ(s.huge_gets, 0u);
}

TEST(Blocks, LiveBlocksNeverOverlap) {
  Pool pool;
  std::mt19937_64 rng(7);
  std::vector<bp_block *> blocks;
  for (int i = 0; i < 1500; i++) {
    size_t cap = (rng() % 4 == 0) ? rng() % 20000 : rng() % 600;
    bp_block *b = bp_block_get(pool, cap);
    ASSERT_NE(b, nullptr);
    std::memset(bp_block_data(b), i % 251, bp_block_cap(b));
    blocks.push_back(b);
    if (rng() % 3 == 0) {  // free a random one, so that reuse happens too
      size_t k = rng() % blocks.size();
      bp_block_unref(blocks[k]);
      blocks[k] = nullptr;
    }
  }
  // Every live block still holds its own fill: nobody else was given its
  // bytes.
  for (size_t i = 0; i < blocks.size(); i++) {
    if (!blocks[i]) continue;
    size_t cap = bp_block_cap(blocks[i]);
    std::string want(cap, static_cast<char>(i % 251));
    ASSERT_EQ(std::memcmp(bp_block_data(blocks[i]), want.data(), cap), 0) << "block " << i;
  }
  // Also check address ranges directly.
  std::vector<std::pair<uintptr_t, uintptr_t>> r;
  for (bp_block *b : blocks)
    if (b) r.emplace_back(reinterpret_cast<uintptr_t>(b),
                          reinterpret_cast<uintptr_t>(bp_block_data(b)) + bp_block_cap(b));
  std::sort(r.begin(), r.end());
  for (size_t i = 1; i < r.size(); i++) {
    EXPECT_LE(r[i - 1].second, r[i].first);
  }
  for (bp_block *b : blocks) bp_block_unref(b);
  EXPECT_EQ(pool.stats().blocks_in_use, 0u);
}

TEST(Blocks, RefUnrefAndTheLastUnrefReturnsTheBlock) {
  Pool pool;
  bp_block *b = bp_block_get(pool, 100);
  ASSERT_NE(b, nullptr);
  bp_block_ref(b);
  bp_block_ref(b);
  EXPECT_EQ(bp_block_refs(b), 3u);
  bp_block_unref(b);
  EXPECT_EQ(bp_block_refs(b), 2u);
  EXPECT_EQ(pool.stats().blocks_in_use, 1u);
  bp_block_unref(b);
  EXPECT_EQ(bp_block_refs(b), 1u);
  EXPECT_EQ(pool.stats().blocks_in_use, 1u);
  EXPECT_EQ(pool.stats().block_puts, 0u);
  bp_block_unref(b);
  bp_stats s = pool.stats();
  EXPECT_EQ(s.blocks_in_use, 0u);
  EXPECT_EQ(s.block_puts, 1u);
  EXPECT_EQ(s.bytes_in_use, 0u);
  EXPECT_GE(s.bytes_cached, bptest::ClassSizeFor(100));
  bp_block_unref(nullptr);  // accepted
}

TEST(Blocks, SliceDupAndRelease) {
  Pool pool;
  bp_block *b = bptest::FilledBlock(pool, "hello world");
  ASSERT_NE(b, nullptr);
  bp_slice s{b, 6, 5};
  bp_slice d{};
  bp_slice_dup(&d, &s);
  EXPECT_EQ(d.blk, b);
  EXPECT_EQ(d.off, 6u);
  EXPECT_EQ(d.len, 5u);
  EXPECT_EQ(bp_block_refs(b), 2u);
  EXPECT_EQ(std::string(bp_slice_ptr(&d), d.len), "world");
  bp_slice_release(&d);
  EXPECT_EQ(d.blk, nullptr);
  EXPECT_EQ(d.off, 0u);
  EXPECT_EQ(d.len, 0u);
  EXPECT_EQ(bp_block_refs(b), 1u);
  bp_slice_release(&d);  // an empty slice: no-op
  EXPECT_EQ(bp_block_refs(b), 1u);
  bp_slice_release(&s);  // drops the original reference
  EXPECT_EQ(s.blk, nullptr);
  EXPECT_EQ(pool.stats().blocks_in_use, 0u);
}

// A slice taken from a chain keeps its bytes after the chain is gone and
// the pool has handed the chain's other memory out again.
TEST(Refcount, SliceOutlivesItsChain) {
  Pool pool;
  bp_chain c;
  bp_chain_init(&c, pool);
  std::string data(3000, '\0');
  for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<char>('A' + i % 26);
  ASSERT_EQ(bp_chain_append(&c, data.data(), data.size()), 0);
  bp_slice s{};
  ASSERT_EQ(bp_chain_slice(&c, 100, 50, &s), 0);
  ASSERT_NE(s.blk, nullptr);
  uint32_t refs_with_chain = bp_block_refs(s.blk);
  EXPECT_GE(refs_with_chain, 2u);
  bp_chain_deinit(&c);
  EXPECT_EQ(bp_block_refs(s.blk), 1u);  // only the slice holds it now
  EXPECT_EQ(std::string(bp_slice_ptr(&s), s.len), data.substr(100, 50));
  // Reuse the pool hard: everything handed out gets scribbled on.
  std::vector<bp_block *> v;
  for (int i = 0; i < 500; i++) {
    bp_block *b = bp_block_get(pool, 3000);
    ASSERT_NE(b, nullptr);
    std::memset(bp_block_data(b), 0xEE, bp_block_cap(b));
    v.push_back(b);
  }
  EXPECT_EQ(std::string(bp_slice_ptr(&s), s.len), data.substr(100, 50));
  for (bp_block *b : v) bp_block_unref(b);
  EXPECT_EQ(std::string(bp_slice_ptr(&s), s.len), data.substr(100, 50));
  bp_slice_release(&s);
}

// One block referenced by three chains is returned only when the last chain
// lets go. The block comes from its own pool so that blocks_in_use counts
// it alone (the chains allocate their nodes from another pool).
TEST(Refcount, BlockSharedByThreeChains) {
  Pool data_pool;
  Pool chain_pool;
  const std::string text = "shared bytes: three chains, one block";
  bp_block *b = bptest::FilledBlock(data_pool, text);
  ASSERT_NE(b, nullptr);
  bp_chain c[3];
  for (auto &ch : c) bp_chain_init(&ch, chain_pool);
  ASSERT_EQ(bp_chain_adopt(&c[0], b, 0, static_cast<uint32_t>(text.size())), 0);
  EXPECT_EQ(bp_block_refs(b), 1u);  // the chain took over our reference
  bp_slice s{};
  ASSERT_EQ(bp_chain_slice(&c[0], 0, text.size(), &s), 0);
  ASSERT_EQ(bp_chain_append_ref(&c[1], &s), 0);
  ASSERT_EQ(bp_chain_append_ref(&c[2], &s), 0);
  bp_slice_release(&s);
  EXPECT_EQ(bp_block_refs(b), 3u);
  EXPECT_EQ(data_pool.stats().blocks_in_use, 1u);
  bp_stats before = chain_pool.stats();

  bp_chain_deinit(&c[0]);
  EXPECT_EQ(bp_block_refs(b), 2u);
  EXPECT_EQ(data_pool.stats().blocks_in_use, 1u);
  EXPECT_EQ(bptest::ChainBytes(&c[2]), text);
  bp_chain_deinit(&c[2]);
  EXPECT_EQ(bp_block_refs(b), 1u);
  EXPECT_EQ(data_pool.stats().blocks_in_use, 1u);
  EXPECT_EQ(data_pool.stats().block_puts, 0u);
  EXPECT_EQ(bptest::ChainBytes(&c[1]), text);
  bp_chain_deinit(&c[1]);
  bp_stats s_end = data_pool.stats();
  EXPECT_EQ(s_end.blocks_in_use, 0u);
  EXPECT_EQ(s_end.block_puts, 1u);
  // Nothing was copied to share it.
  bp_stats after = chain_pool.stats();
  EXPECT_EQ(after.copied_view_bytes, before.copied_view_bytes);
  EXPECT_EQ(after.copied_append_bytes, before.copied_append_bytes);
  EXPECT_EQ(after.copied_out_bytes, before.copied_out_bytes);
}

// ---------------------------------------------------------------------------
// Huge blocks
// ---------------------------------------------------------------------------

TEST(HugeBlocks, ComeFromMmapAndAreUnmappedOnRelease) {
  Pool pool;
  bp_block_unref(bp_block_get(pool, 100));  // this thread's cache exists now
  const size_t caps[] = {kMaxClassCap + 1, BP_MAX_CLASS_SIZE, size_t{1} << 20,
                         3 * (size_t{1} << 20) + 5};
  for (size_t cap : caps) {
    SCOPED_TRACE(cap);
    EXPECT_EQ(bp_class_of(cap), -1);
    bp_stats s0 = pool.stats();
    bp_block *b = bp_block_get(pool, cap);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(bp_block_refs(b), 1u);
    ASSERT_GE(bp_block_cap(b), cap);
    std::memset(bp_block_data(b), 0x3C, bp_block_cap(b));
    bp_stats s1 = pool.stats();
    EXPECT_EQ(s1.huge_gets, s0.huge_gets + 1);
    EXPECT_GT(s1.sys_alloc_calls, s0.sys_alloc_calls);
    EXPECT_GE(s1.sys_bytes, s0.sys_bytes + cap);
    EXPECT_EQ(s1.blocks_in_use, s0.blocks_in_use + 1);
    EXPECT_EQ(s1.block_gets, s0.block_gets + 1);
    // An extra reference keeps it mapped.
    bp_block_ref(b);
    bp_block_unref(b);
    EXPECT_EQ(pool.stats().sys_free_calls, s1.sys_free_calls);
    EXPECT_EQ(static_cast<unsigned char>(bp_block_data(b)[cap - 1]), 0x3C);
    bp_block_unref(b);
    bp_stats s2 = pool.stats();
    EXPECT_GT(s2.sys_free_calls, s1.sys_free_calls);  // munmap'd, not cached
    EXPECT_EQ(s2.sys_bytes, s0.sys_bytes);
    EXPECT_EQ(s2.blocks_in_use, s0.blocks_in_use);
    EXPECT_EQ(s2.bytes_cached, s0.bytes_cached);
    EXPECT_EQ(s2.charged_bytes, s0.charged_bytes);
  }
  // The largest class is not huge.
  bp_stats s0 = pool.stats();
  bp_block *b = bp_block_get(pool, kMaxClassCap);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(pool.stats().huge_gets, s0.huge_gets);
  bp_block_unref(b);
}

TEST(HugeBlocks, ImpossibleSizesFailCleanly) {
  Pool pool;
  const size_t caps[] = {SIZE_MAX, SIZE_MAX - BP_BLOCK_HDR + 1, SIZE_MAX - 4095,
                         size_t{1} << 62};
  uint64_t enomem = 0;
  for (size_t cap : caps) {
    EXPECT_EQ(bp_block_get(pool, cap), nullptr) << cap;
    bp_stats s = pool.stats();
    EXPECT_EQ(s.enomem, ++enomem) << cap;
    EXPECT_EQ(s.blocks_in_use, 0u);
  }
}

// ---------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------

// A bounded queue of batches (the test's own hand-off, with the usual
// happens-before).
class BatchQueue {
 public:
  explicit BatchQueue(size_t max) : max_(max) {}
  void push(std::vector<bp_block *> v) {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return q_.size() < max_; });
    q_.push_back(std::move(v));
    cv_.notify_all();
  }
  // Empty vector = end of stream.
  std::vector<bp_block *> pop() {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return !q_.empty(); });
    auto v = std::move(q_.front());
    q_.pop_front();
    cv_.notify_all();
    return v;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::vector<bp_block *>> q_;
  size_t max_;
};

// Thread A gets and stamps, thread B checks the stamps and unrefs. A block
// handed to A while B still held it would show B a foreign stamp.
TEST(PoolThreads, CrossThreadFree) {
  Pool pool;
  const size_t caps[] = {100, 1000, 3000};
  const uint64_t rounds = 60000;
  const size_t batch = 64;
  bp_stats s0 = pool.stats();
  BatchQueue q(8);
  std::atomic<bool> a_ok{true};
  std::thread a([&] {
    std::vector<bp_block *> v;
    for (uint64_t i = 0; i < rounds; i++) {
      size_t cap = caps[i % 3];
      bp_block *b = bp_block_get(pool, cap);
      if (!b) {
        a_ok = false;
        break;
      }
      std::memcpy(bp_block_data(b), &i, 8);
      std::memcpy(bp_block_data(b) + cap - 8, &i, 8);
      v.push_back(b);
      if (v.size() == batch) q.push(std::move(v)), v.clear();
    }
    if (!v.empty()) q.push(std::move(v));
    q.push({});
  });
  uint64_t bad = 0, seen = 0;
  std::thread bthr([&] {
    for (;;) {
      std::vector<bp_block *> v = q.pop();
      if (v.empty()) break;
      for (bp_block *b : v) {
        size_t cap = caps[seen % 3];
        uint64_t x, y;
        std::memcpy(&x, bp_block_data(b), 8);
        std::memcpy(&y, bp_block_data(b) + cap - 8, 8);
        if (x != seen || y != seen) bad++;
        seen++;
        bp_block_unref(b);
      }
    }
  });
  a.join();
  bthr.join();
  EXPECT_TRUE(a_ok);
  EXPECT_EQ(seen, rounds);
  EXPECT_EQ(bad, 0u);
  bp_stats s1 = pool.stats();
  EXPECT_EQ(s1.blocks_in_use, s0.blocks_in_use);
  EXPECT_EQ(s1.bytes_in_use, s0.bytes_in_use);
  EXPECT_EQ(s1.block_gets - s0.block_gets, rounds);
  EXPECT_EQ(s1.block_puts - s0.block_puts, rounds);
  // The blocks B freed went back to A through the depot: memory stayed
  // bounded by what is in flight plus the caches, far below one block per
  // round (rounds * ~1.4 KiB = ~85 MiB).
  uint64_t no_reuse = 0;
  for (uint64_t i = 0; i < rounds; i++) no_reuse += bptest::ClassSizeFor(caps[i % 3]);
  EXPECT_LT(s1.charged_bytes, no_reuse / 8) << "cross-thread frees are not reused";
}

// Many threads drop references to the same blocks at the same time; each
// block is returned exactly once.
TEST(PoolThreads, ConcurrentUnrefOfSharedBlocks) {
  Pool pool;
  const int kThreads = 4;
  const int kBlocks = 4000;
  std::vector<bp_block *> v;
  for (int i = 0; i < kBlocks; i++) {
    bp_block *b = bp_block_get(pool, 64 + i % 200);
    ASSERT_NE(b, nullptr);
    for (int r = 1; r < kThreads; r++) bp_block_ref(b);
    v.push_back(b);
  }
  bp_stats s0 = pool.stats();
  EXPECT_EQ(s0.blocks_in_use, static_cast<uint64_t>(kBlocks));
  std::atomic<int> ready{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; t++) {
    ts.emplace_back([&] {
      ready++;
      while (ready.load() < kThreads) std::this_thread::yield();
      for (bp_block *b : v) bp_block_unref(b);
    });
  }
  for (auto &t : ts) t.join();
  bp_stats s1 = pool.stats();
  EXPECT_EQ(s1.blocks_in_use, 0u);
  EXPECT_EQ(s1.block_puts, static_cast<uint64_t>(kBlocks));
  EXPECT_EQ(s1.bytes_in_use, 0u);
  // All of them can be handed out again, distinct.
  std::vector<bp_block *> again;
  for (int i = 0; i < kBlocks; i++) again.push_back(bp_block_get(pool, 64 + i % 200));
  std::vector<bp_block *> sorted = again;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end())
      << "a block was returned twice";
  for (bp_block *b : again) bp_block_unref(b);
}

// A thread that exits gives its cache back: the main thread then gets the
// same number of blocks of that class without carving any new memory.
TEST(PoolThreads, ThreadExitGivesItsCacheBack) {
  Pool pool;
  const size_t cap = 500;
  const int n = 2000;
  const uint64_t sz = bptest::ClassSizeFor(cap);
  std::thread t([&] {
    std::vector<bp_block *> v;
    for (int i = 0; i < n; i++) {
      bp_block *b = bp_block_get(pool, cap);
      ASSERT_NE(b, nullptr);
      v.push_back(b);
    }
    for (bp_block *b : v) bp_block_unref(b);
  });
  t.join();
  bp_stats s0 = pool.stats();
  // The exited thread's counters are folded into the pool's totals.
  EXPECT_EQ(s0.block_gets, static_cast<uint64_t>(n));
  EXPECT_EQ(s0.block_puts, static_cast<uint64_t>(n));
  EXPECT_EQ(s0.blocks_in_use, 0u);
  EXPECT_GE(s0.bytes_cached, n * sz);
  EXPECT_GE(s0.charged_bytes, n * sz);

  std::vector<bp_block *> v;
  for (int i = 0; i < n; i++) {
    bp_block *b = bp_block_get(pool, cap);
    ASSERT_NE(b, nullptr);
    v.push_back(b);
  }
  bp_stats s1 = pool.stats();
  EXPECT_EQ(s1.charged_bytes, s0.charged_bytes) << "the exited thread's blocks were not reused";
  EXPECT_EQ(s1.blocks_in_use, static_cast<uint64_t>(n));
  for (bp_block *b : v) bp_block_unref(b);
}

// bp_pool_thread_flush does the same for a thread that keeps running.
TEST(PoolThreads, ThreadFlushGivesItsCacheBack) {
  Pool pool;
  const size_t cap = 2000;
  const int n = 700;
  std::mutex m;
  std::condition_variable cv;
  int phase = 0;
  std::thread t([&] {
    std::vector<bp_block *> v;
    for (int i = 0; i < n; i++) v.push_back(bp_block_get(pool, cap));
    for (bp_block *b : v) bp_block_unref(b);
    bp_pool_thread_flush(pool);
    std::unique_lock<std::mutex> l(m);
    phase = 1;
    cv.notify_all();
    cv.wait(l, [&] { return phase == 2; });
  });
  {
    std::unique_lock<std::mutex> l(m);
    cv.wait(l, [&] { return phase == 1; });
  }
  bp_stats s0 = pool.stats();
  EXPECT_EQ(s0.blocks_in_use, 0u);
  std::vector<bp_block *> v;
  for (int i = 0; i < n; i++) {
    bp_block *b = bp_block_get(pool, cap);
    ASSERT_NE(b, nullptr);
    v.push_back(b);
  }
  EXPECT_EQ(pool.stats().charged_bytes, s0.charged_bytes);
  for (bp_block *b : v) bp_block_unref(b);
  {
    std::lock_guard<std::mutex> l(m);
    phase = 2;
    cv.notify_all();
  }
  t.join();
}

// Stats are summed over live threads on demand, while they run.
TEST(PoolThreads, StatsOfALiveThreadAreSummed) {
  Pool pool;
  const int k = 123;
  std::mutex m;
  std::condition_variable cv;
  int phase = 0;
  std::vector<bp_block *> held;
  std::thread t([&] {
    for (int i = 0; i < k; i++) held.push_back(bp_block_get(pool, 300));
    std::unique_lock<std::mutex> l(m);
    phase = 1;
    cv.notify_all();
    cv.wait(l, [&] { return phase == 2; });
    for (bp_block *b : held) bp_block_unref(b);
  });
  {
    std::unique_lock<std::mutex> l(m);
    cv.wait(l, [&] { return phase == 1; });
  }
  bp_stats s = pool.stats();
  EXPECT_EQ(s.block_gets, static_cast<uint64_t>(k));
  EXPECT_EQ(s.blocks_in_use, static_cast<uint64_t>(k));
  EXPECT_EQ(s.bytes_in_use, k * bptest::ClassSizeFor(300));
  {
    std::lock_guard<std::mutex> l(m);
    phase = 2;
    cv.notify_all();
  }
  t.join();
  EXPECT_EQ(pool.stats().blocks_in_use, 0u);
}

// ---------------------------------------------------------------------------
// The memory limit
// ---------------------------------------------------------------------------

TEST(MemoryLimit, GetsSucceedUntilTheLimitThenFail) {
  const size_t cap = 1000;
  const uint64_t sz = bptest::ClassSizeFor(cap);
  ASSERT_GT(sz, 0u);
  const uint64_t fit = 50;
  const size_t limit = fit * sz + sz / 2;  // not a multiple of any batch
  Pool pool(limit);
  EXPECT_EQ(pool.stats().limit_bytes, limit);
  std::vector<bp_block *> v;
  for (int i = 0; i < 10000; i++) {
    bp_block *b = bp_block_get(pool, cap);
    if (!b) break;
    v.push_back(b);
  }
  EXPECT_EQ(v.size(), fit) << "gets must succeed while charged + block <= limit";
  bp_stats s = pool.stats();
  EXPECT_LE(s.charged_bytes, limit);
  EXPECT_GE(s.charged_bytes, fit * sz);
  EXPECT_EQ(s.enomem, 1u);
  EXPECT_EQ(bp_block_get(pool, cap), nullptr);
  EXPECT_EQ(pool.stats().enomem, 2u);
  EXPECT_EQ(pool.stats().blocks_in_use, fit);

  // Freeing one makes room for one.
  bp_block_unref(v.back());
  v.pop_back();
  bp_block *b = bp_block_get(pool, cap);
  ASSERT_NE(b, nullptr);
  v.push_back(b);
  EXPECT_EQ(bp_block_get(pool, cap), nullptr);
  EXPECT_EQ(pool.stats().enomem, 3u);

  // Freeing all makes room for all.
  for (bp_block *x : v) bp_block_unref(x);
  v.clear();
  for (uint64_t i = 0; i < fit; i++) {
    bp_block *x = bp_block_get(pool, cap);
    ASSERT_NE(x, nullptr) << i;
    v.push_back(x);
  }
  EXPECT_EQ(pool.stats().enomem, 3u);
  EXPECT_LE(pool.stats().charged_bytes, limit);
  for (bp_block *x : v) bp_block_unref(x);
}

// A limit that is an exact multiple of the block size: the block that
// brings charged_bytes to exactly the limit is allowed.
TEST(MemoryLimit, ExactlyAtTheLimitIsAllowed) {
  const size_t cap = 4000;
  const uint64_t sz = bptest::ClassSizeFor(cap);
  const size_t limit = 8 * sz;
  Pool pool(limit);
  std::vector<bp_block *> v;
  for (int i = 0; i < 100; i++) {
    bp_block *b = bp_block_get(pool, cap);
    if (!b) break;
    v.push_back(b);
  }
  EXPECT_EQ(v.size(), 8u);
  EXPECT_EQ(pool.stats().charged_bytes, limit);
  EXPECT_EQ(pool.stats().enomem, 1u);
  for (bp_block *b : v) bp_block_unref(b);

  // The same for a huge block whose mapping is exactly the limit.
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  Pool hp(4 * page + 64 * page);
  bp_block *probe = bp_block_get(hp, BP_MAX_CLASS_SIZE);
  ASSERT_NE(probe, nullptr);
  uint64_t mapped = hp.stats().charged_bytes;  // what one such block costs
  bp_block_unref(probe);
  Pool exact(mapped);
  bp_block *h = bp_block_get(exact, BP_MAX_CLASS_SIZE);
  EXPECT_NE(h, nullptr) << "a huge block of exactly the limit was refused";
  EXPECT_EQ(exact.stats().charged_bytes, mapped);
  EXPECT_EQ(bp_block_get(exact, BP_MAX_CLASS_SIZE), nullptr);
  bp_block_unref(h);
}

TEST(MemoryLimit, HugeBlocksRespectTheLimit) {
  const size_t mib = size_t{1} << 20;
  const size_t limit = 4 * mib;
  Pool pool(limit);
  bp_block *a = bp_block_get(pool, 3 * mib);
  ASSERT_NE(a, nullptr);
  bp_stats s = pool.stats();
  EXPECT_GE(s.charged_bytes, 3 * mib);
  EXPECT_LE(s.charged_bytes, limit);
  EXPECT_EQ(bp_block_get(pool, 2 * mib), nullptr);
  EXPECT_EQ(pool.stats().enomem, 1u);
  EXPECT_EQ(pool.stats().huge_gets, 1u);
  EXPECT_EQ(bp_block_get(pool, 8 * mib), nullptr);
  EXPECT_EQ(pool.stats().enomem, 2u);
  bp_block_unref(a);
  EXPECT_EQ(pool.stats().charged_bytes, 0u);  // unmapped and uncharged
  bp_block *b = bp_block_get(pool, 2 * mib);
  ASSERT_NE(b, nullptr);
  bp_block *c = bp_block_get(pool, mib + mib / 2);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(bp_block_get(pool, mib), nullptr);  // 4.5 MiB > 4 MiB
  EXPECT_EQ(pool.stats().enomem, 3u);
  EXPECT_LE(pool.stats().charged_bytes, limit);
  bp_block_unref(b);
  bp_block_unref(c);
}

TEST(MemoryLimit, ClassBlocksAndHugeBlocksShareTheLimit) {
  const size_t limit = 2u << 20;
  Pool pool(limit);
  std::vector<bp_block *> v;
  for (int i = 0; i < 1000; i++) {
    bp_block *b = bp_block_get(pool, 60000);
    if (!b) break;
    v.push_back(b);
  }
  ASSERT_FALSE(v.empty());
  uint64_t enomem = pool.stats().enomem;
  EXPECT_EQ(enomem, 1u);
  uint64_t charged = pool.stats().charged_bytes;
  EXPECT_LE(charged, limit);
  // A huge block that does not fit what is left is refused.
  size_t left = limit - charged;
  EXPECT_EQ(bp_block_get(pool, std::max(left + 1, kMaxClassCap + 1)), nullptr);
  EXPECT_EQ(pool.stats().enomem, enomem + 1);
  EXPECT_EQ(pool.stats().huge_gets, 0u);
  for (bp_block *b : v) bp_block_unref(b);
}

// ---------------------------------------------------------------------------
// The warm pool makes no system allocation.
// ---------------------------------------------------------------------------

TEST(WarmPool, MillionGetPutPairsWithoutSystemAllocation) {
  Pool pool;
  const size_t caps[] = {64, 500, 4000, 30000};
  for (size_t cap : caps) bp_block_unref(bp_block_get(pool, cap));  // warm up
  bp_stats s0 = pool.stats();
  const uint64_t n = 1000000;
  for (uint64_t i = 0; i < n; i++) {
    bp_block *b = bp_block_get(pool, caps[i & 3]);
    if (b == nullptr) {
      FAIL() << "get failed at " << i;
    }
    bp_block_data(b)[0] = static_cast<char>(i);
    bp_block_unref(b);
  }
  bp_stats s1 = pool.stats();
  EXPECT_EQ(s1.sys_alloc_calls, s0.sys_alloc_calls);
  EXPECT_EQ(s1.sys_free_calls, s0.sys_free_calls);
  EXPECT_EQ(s1.sys_bytes, s0.sys_bytes);
  EXPECT_EQ(s1.charged_bytes, s0.charged_bytes);
  EXPECT_EQ(s1.block_gets - s0.block_gets, n);
  EXPECT_EQ(s1.block_puts - s0.block_puts, n);
  EXPECT_EQ(s1.pool_hits - s0.pool_hits, n);
  EXPECT_EQ(s1.pool_misses, s0.pool_misses);
  EXPECT_EQ(s1.blocks_in_use, 0u);
}

// ---------------------------------------------------------------------------
// Pool lifetime
// ---------------------------------------------------------------------------

TEST(PoolLifetime, DestroyAcceptsNullAndSetsNull) {
  bp_pool_destroy(nullptr);
  bp_pool *p = nullptr;
  bp_pool_destroy(&p);
  bp_pool_opts o{};
  p = bp_pool_create(&o);
  ASSERT_NE(p, nullptr);
  bp_block_unref(bp_block_get(p, 10));
  bp_pool_destroy(&p);
  EXPECT_EQ(p, nullptr);
}

TEST(PoolLifetime, AtMostMaxPoolsAndSlotsAreReused) {
  std::vector<bp_pool *> v;
  bp_pool_opts o{};
  errno = 0;
  bp_pool *p = nullptr;
  for (int i = 0; i < BP_MAX_POOLS + 4; i++) {
    errno = 0;
    p = bp_pool_create(&o);
    if (!p) break;
    v.push_back(p);
  }
  EXPECT_EQ(p, nullptr) << "more than BP_MAX_POOLS pools created";
  EXPECT_NE(errno, 0);
  // No other pool is alive in this test: all BP_MAX_POOLS are ours.
  EXPECT_EQ(v.size(), static_cast<size_t>(BP_MAX_POOLS));
  // Use every pool from this thread so that each has a thread cache.
  for (bp_pool *x : v) bp_block_unref(bp_block_get(x, 100));
  for (bp_pool *&x : v) bp_pool_destroy(&x);
  // A destroyed pool's slot (and this thread's stale cache for it) must
  // not leak into the next pool.
  for (int round = 0; round < 3; round++) {
    bp_pool *q = bp_pool_create(&o);
    ASSERT_NE(q, nullptr);
    bp_block *b = bp_block_get(q, 100);
    ASSERT_NE(b, nullptr);
    bp_stats s;
    bp_pool_stats(q, &s);
    EXPECT_EQ(s.block_gets, 1u);
    EXPECT_EQ(s.blocks_in_use, 1u);
    EXPECT_EQ(s.block_puts, 0u);
    bp_block_unref(b);
    bp_pool_stats(q, &s);
    EXPECT_EQ(s.block_puts, 1u);
    bp_pool_destroy(&q);
  }
}

// ---------------------------------------------------------------------------
// bp_block_charge: what a block counts against the limit
// ---------------------------------------------------------------------------

// A pool whose limit is exactly bp_block_charge(cap) grants one such block
// and then charges exactly that; one byte less refuses it. Small and
// largest classes, and huge blocks on and off a page boundary.
TEST(BlockCharge, IsWhatTheLimitCounts) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t mib = size_t{1} << 20;
  const size_t caps[] = {0,       1,       100,        1000,        4000,
                         kMaxClassCap - 1, kMaxClassCap, kMaxClassCap + 1,
                         mib - 16, mib,     3 * mib + 5};
  for (size_t cap : caps) {
    SCOPED_TRACE(cap);
    const size_t charge = bp_block_charge(cap);
    ASSERT_GT(charge, cap);
    if (bp_class_of(cap) >= 0) {
      EXPECT_EQ(charge, bp_class_size(bp_class_of(cap)));
    } else {
      EXPECT_EQ(charge % page, 0u);
      EXPECT_LT(charge - cap, page + 16);
    }
    Pool exact(charge);
    bp_block *b = bp_block_get(exact, cap);
    ASSERT_NE(b, nullptr) << "a limit of bp_block_charge(cap) refused the block";
    EXPECT_EQ(exact.stats().charged_bytes, charge);
    EXPECT_EQ(bp_block_get(exact, cap), nullptr);
    bp_block_unref(b);
    if (bp_class_of(cap) < 0) {
      EXPECT_EQ(exact.stats().charged_bytes, 0u);  // unmapped, uncharged
    }
    Pool under(charge - 1);
    EXPECT_EQ(bp_block_get(under, cap), nullptr) << "the block charges less than bp_block_charge(cap)";
    EXPECT_EQ(under.stats().charged_bytes, 0u);
  }
  // 1 MiB - 16 is the largest capacity whose mapping is exactly 1 MiB (the
  // cache's default segment); one byte more takes another page.
  EXPECT_EQ(bp_block_charge(mib - 16), mib);
  EXPECT_EQ(bp_block_charge(mib - 15), mib + page);
}

}  // namespace
