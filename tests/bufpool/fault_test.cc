// Tests for bufpool/fault.c: every:N fails exactly every Nth get, prob
// with a seed repeats, after:M and min:BYTES are respected, every kind of
// get can fail, failures are counted per pool, malformed specs change
// nothing, GEECACHE_FAULT_ALLOC is read at the first pool, and a pool
// used through failures stays consistent (nothing in use once all is put
// back; ASan checks for leaks).
#include <gtest/gtest.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bufpool/bufpool.h"
#include "bp_test_util.h"

extern char **environ;

using bptest::Pool;

namespace {

// Injection is process-wide: every test leaves it off.
class FaultTest : public ::testing::Test {
 protected:
  void TearDown() override { EXPECT_EQ(bp_fault_set(nullptr), 0); }
};

// Takes n blocks of `cap` bytes; returns which gets (0-based) failed and
// keeps the blocks in *held.
std::vector<bool> Gets(bp_pool *pool, size_t cap, int n, std::vector<bp_block *> *held) {
  std::vector<bool> failed;
  for (int i = 0; i < n; i++) {
    bp_block *b = bp_block_get(pool, cap);
    failed.push_back(b == nullptr);
    if (b) held->push_back(b);
  }
  return failed;
}

void PutAll(std::vector<bp_block *> *held) {
  for (bp_block *b : *held) bp_block_unref(b);
  held->clear();
}

TEST_F(FaultTest, EveryNFailsExactlyEveryNth) {
  Pool pool;
  std::vector<bp_block *> held;
  ASSERT_EQ(bp_fault_set("every:3"), 0);
  std::vector<bool> failed = Gets(pool, 100, 30, &held);
  for (int i = 0; i < 30; i++)
    EXPECT_EQ(failed[i], (i + 1) % 3 == 0) << "get " << i + 1;
  bp_stats s = pool.stats();
  EXPECT_EQ(s.faults_injected, 10u);
  EXPECT_EQ(s.enomem, 10u);  // to the caller, a fault is the limit
  EXPECT_EQ(s.blocks_in_use, 20u);
  PutAll(&held);
  EXPECT_EQ(pool.stats().blocks_in_use, 0u);

  // every:1 refuses everything; setting a spec restarts the count.
  ASSERT_EQ(bp_fault_set("every:1"), 0);
  failed = Gets(pool, 100, 5, &held);
  EXPECT_EQ(std::count(failed.begin(), failed.end(), true), 5);
  ASSERT_EQ(bp_fault_set("every:2"), 0);
  failed = Gets(pool, 100, 4, &held);
  EXPECT_EQ(failed, (std::vector<bool>{false, true, false, true}));
  PutAll(&held);
  EXPECT_EQ(pool.stats().faults_injected, 17u);
}

TEST_F(FaultTest, AfterMNeverFailsTheFirstM) {
  Pool pool;
  std::vector<bp_block *> held;
  ASSERT_EQ(bp_fault_set("every:2,after:5"), 0);
  std::vector<bool> failed = Gets(pool, 64, 15, &held);
  for (int k = 1; k <= 15; k++)
    EXPECT_EQ(failed[k - 1], k > 5 && (k - 5) % 2 == 0) << "get " << k;
  PutAll(&held);

  // With prob:1 everything after the first M fails.
  ASSERT_EQ(bp_fault_set("prob:1:9,after:4"), 0);
  failed = Gets(pool, 64, 10, &held);
  for (int k = 1; k <= 10; k++) EXPECT_EQ(failed[k - 1], k > 4) << "get " << k;
  PutAll(&held);
  EXPECT_EQ(pool.stats().blocks_in_use, 0u);
  EXPECT_EQ(pool.stats().faults_injected, 5u + 6u);
}

TEST_F(FaultTest, ProbWithASeedRepeats) {
  Pool pool;
  std::vector<bp_block *> held;
  ASSERT_EQ(bp_fault_set("prob:0.3:42"), 0);
  std::vector<bool> a = Gets(pool, 200, 2000, &held);
  PutAll(&held);
  ASSERT_EQ(bp_fault_set("prob:0.3:42"), 0);
  std::vector<bool> b = Gets(pool, 200, 2000, &held);
  PutAll(&held);
  ASSERT_EQ(bp_fault_set("prob:0.3:43"), 0);
  std::vector<bool> c = Gets(pool, 200, 2000, &held);
  PutAll(&held);
  EXPECT_EQ(a, b) << "the same seed must give the same failures";
  EXPECT_NE(a, c) << "another seed, another sequence";
  long n = std::count(a.begin(), a.end(), true);
  EXPECT_GT(n, 2000 * 0.3 * 0.8);
  EXPECT_LT(n, 2000 * 0.3 * 1.2);
  bp_stats s = pool.stats();
  EXPECT_EQ(s.faults_injected,
            static_cast<uint64_t>(n + std::count(b.begin(), b.end(), true) +
                                  std::count(c.begin(), c.end(), true)));
  EXPECT_EQ(s.blocks_in_use, 0u);

  ASSERT_EQ(bp_fault_set("prob:0:1"), 0);
  a = Gets(pool, 200, 500, &held);
  PutAll(&held);
  EXPECT_EQ(std::count(a.begin(), a.end(), true), 0);
  ASSERT_EQ(bp_fault_set("prob:1.0:1"), 0);
  a = Gets(pool, 200, 500, &held);
  EXPECT_EQ(std::count(a.begin(), a.end(), true), 500);
}

// Cached, carved and huge blocks, objects, chain nodes and chain blocks:
// with every:1 each of them is refused, and the calls fail cleanly.
TEST_F(FaultTest, EveryKindOfGetCanFail) {
  Pool pool;
  bp_block *warm = bp_block_get(pool, 1000);
  ASSERT_NE(warm, nullptr);
  bp_block_unref(warm);  // now in this thread's cache
  bp_objpool *op = bp_objpool_create(pool, "f", 100);
  ASSERT_NE(op, nullptr);
  bp_chain c;
  bp_chain_init(&c, pool);
  ASSERT_EQ(bp_chain_append(&c, "abc", 3), 0);

  ASSERT_EQ(bp_fault_set("every:1"), 0);
  EXPECT_EQ(bp_block_get(pool, 1000), nullptr) << "a cache hit";
  EXPECT_EQ(bp_block_get(pool, 100000), nullptr) << "a carved class";
  EXPECT_EQ(bp_block_get(pool, 1 << 20), nullptr) << "a huge block";
  EXPECT_EQ(bp_objpool_get(op), nullptr);
  std::string big(8192, 'x');
  EXPECT_EQ(bp_chain_append(&c, big.data(), big.size()), -ENOMEM);
  EXPECT_EQ(bp_chain_len(&c), 3u) << "a failed append changes nothing";
  bp_chain d;
  bp_chain_init(&d, pool);
  EXPECT_EQ(bp_chain_cut(&c, 1, &d), -ENOMEM);
  EXPECT_EQ(bp_chain_len(&c), 3u);
  iovec iov[2];
  bp_chain_trim(&c);
  bp_chain e;
  bp_chain_init(&e, pool);
  EXPECT_EQ(bp_chain_read_iov(&e, iov, 2), -ENOMEM);
  EXPECT_EQ(bptest::ChainBytes(&c), "abc");
  EXPECT_EQ(pool.stats().faults_injected, 7u);

  ASSERT_EQ(bp_fault_set(nullptr), 0);
  void *obj = bp_objpool_get(op);
  EXPECT_NE(obj, nullptr);
  bp_objpool_put(op, &obj);
  bp_chain_deinit(&c);
  bp_chain_deinit(&d);
  bp_chain_deinit(&e);
  bp_objpool_destroy(&op);
  EXPECT_EQ(pool.stats().blocks_in_use, 0u);
}

TEST_F(FaultTest, MinCountsOnlyLargerBlocks) {
  Pool pool;
  std::vector<bp_block *> held;
  ASSERT_EQ(bp_fault_set("every:2,min:4000"), 0);
  // Small gets are neither refused nor counted.
  std::vector<bool> small = Gets(pool, 100, 10, &held);
  EXPECT_EQ(std::count(small.begin(), small.end(), true), 0);
  std::vector<bool> big = Gets(pool, 4088, 4, &held);
  EXPECT_EQ(big, (std::vector<bool>{false, true, false, true}));
  // The class's capacity counts: 3900 bytes come from a 4096 class.
  big = Gets(pool, 3900, 2, &held);
  EXPECT_EQ(big, (std::vector<bool>{false, true}));
  big = Gets(pool, 1 << 20, 2, &held);  // huge: the 7th and 8th counted
  EXPECT_EQ(big, (std::vector<bool>{false, true}));
  PutAll(&held);
  bp_stats s = pool.stats();
  EXPECT_EQ(s.faults_injected, 4u);
  EXPECT_EQ(s.blocks_in_use, 0u);
}

TEST_F(FaultTest, PoolNameLimitsTheFaultsToOnePool) {
  Pool a(0, "net"), b(0, "store");
  std::vector<bp_block *> held;
  ASSERT_EQ(bp_fault_set("every:2,pool:net"), 0);
  // The other pool's gets are neither refused nor counted.
  EXPECT_EQ(Gets(b, 10, 4, &held), (std::vector<bool>{false, false, false, false}));
  EXPECT_EQ(Gets(a, 10, 4, &held), (std::vector<bool>{false, true, false, true}));
  PutAll(&held);
  EXPECT_EQ(a.stats().faults_injected, 2u);
  EXPECT_EQ(b.stats().faults_injected, 0u);
  EXPECT_EQ(bp_fault_set("every:2,pool:"), -EINVAL);
  EXPECT_EQ(bp_fault_set("every:2,pool:net,min:10"), 0);
}

TEST_F(FaultTest, CountedPerPool) {
  Pool a(0, "a"), b(0, "b");
  std::vector<bp_block *> held;
  ASSERT_EQ(bp_fault_set("every:2"), 0);
  Gets(a, 10, 4, &held);  // gets 1-4: 2 and 4 fail
  Gets(b, 10, 2, &held);  // gets 5-6: 6 fails
  PutAll(&held);
  EXPECT_EQ(a.stats().faults_injected, 2u);
  EXPECT_EQ(b.stats().faults_injected, 1u);
}

TEST_F(FaultTest, MalformedSpecChangesNothing) {
  Pool pool;
  ASSERT_EQ(bp_fault_set("every:2"), 0);
  for (const char *bad :
       {"every:0", "every:", "every:x", "every:3x", "every:-1", "every:3:4",
        "every:3,", "every:3,after:", "every:3,after:1:2", "every:3,bogus:1",
        "every:3;after:1", "prob:0.5", "prob:0.5:", "prob:1.5:1", "prob:-0.1:1",
        "prob:nan:1", "prob:x:1", "prob:0.5:1,min:", "often", "EVERY:2"}) {
    EXPECT_EQ(bp_fault_set(bad), -EINVAL) << bad;
  }
  std::vector<bp_block *> held;
  std::vector<bool> failed = Gets(pool, 10, 4, &held);
  EXPECT_EQ(failed, (std::vector<bool>{false, true, false, true}))
      << "every:2 (with its count) must have survived";
  PutAll(&held);

  ASSERT_EQ(bp_fault_set(""), 0);  // off
  failed = Gets(pool, 10, 100, &held);
  PutAll(&held);
  EXPECT_EQ(std::count(failed.begin(), failed.end(), true), 0);
  EXPECT_EQ(pool.stats().faults_injected, 2u);
}

// Random gets, chain appends and puts on several threads, with a share of
// them refused: every refusal is counted once, and the pool ends with
// nothing in use (ASan reports a leaked block, TSan a race in the spec).
TEST_F(FaultTest, PoolStaysConsistentUnderFaults) {
  Pool pool;
  ASSERT_EQ(bp_fault_set("prob:0.2:7"), 0);
  std::atomic<uint64_t> refused{0};
  auto work = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    std::vector<bp_block *> held;
    bp_chain c;
    bp_chain_init(&c, pool);
    std::string bytes(3000, 'q');
    for (int i = 0; i < 4000; i++) {
      uint64_t r = rng();
      if (r % 4 == 0 && !held.empty()) {
        bp_block_unref(held.back());
        held.pop_back();
      } else if (r % 4 == 1) {
        size_t n = 1 + (r >> 8) % bytes.size();
        size_t before = bp_chain_len(&c);
        int e = bp_chain_append(&c, bytes.data(), n);
        EXPECT_TRUE(e == 0 || e == -ENOMEM);
        EXPECT_EQ(bp_chain_len(&c), before + (e == 0 ? n : 0));
        if (bp_chain_len(&c) > 20000) bp_chain_skip(&c, bp_chain_len(&c) / 2);
      } else {
        size_t cap = (r >> 8) % 50 == 0 ? (300u << 10) : (r >> 16) % 9000;
        bp_block *b = bp_block_get(pool, cap);
        if (b)
          held.push_back(b);
        else
          refused++;
      }
    }
    for (bp_block *b : held) bp_block_unref(b);
    bp_chain_deinit(&c);
    bp_pool_thread_flush(pool);
  };
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < 4; t++) ts.emplace_back(work, 100 + t);
  for (auto &t : ts) t.join();
  ASSERT_EQ(bp_fault_set(nullptr), 0);
  bp_stats s = pool.stats();
  EXPECT_EQ(s.blocks_in_use, 0u);
  EXPECT_EQ(s.block_gets, s.block_puts);
  EXPECT_GE(s.faults_injected, refused.load());  // chains' refusals too
  EXPECT_GT(refused.load(), 0u);
  EXPECT_EQ(s.enomem, s.faults_injected) << "no limit: every refusal injected";
}

// GEECACHE_FAULT_ALLOC is read by the process's first bp_pool_create, so it
// is checked in a child: this binary again, running FaultEnv.Child with the
// variable set (the test skips when run without).
int RunChild(const char *spec, const char *expect) {
  std::string filter = "--gtest_filter=FaultEnv.Child";
  std::string env_spec = std::string("GEECACHE_FAULT_ALLOC=") + spec;
  std::string env_expect = std::string("GC_FAULT_TEST_EXPECT=") + expect;
  std::vector<char *> env;
  for (char **e = environ; *e; e++)
    if (std::strncmp(*e, "GEECACHE_FAULT_ALLOC=", 21) != 0 &&
        std::strncmp(*e, "GC_FAULT_TEST_EXPECT=", 21) != 0)
      env.push_back(*e);
  env.push_back(env_spec.data());
  env.push_back(env_expect.data());
  env.push_back(nullptr);
  char self[] = "/proc/self/exe";
  char *argv[] = {self, filter.data(), nullptr};
  pid_t pid;
  if (posix_spawn(&pid, self, nullptr, nullptr, argv, env.data()) != 0) return -1;
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TEST(FaultEnv, Child) {
  const char *expect = std::getenv("GC_FAULT_TEST_EXPECT");
  if (!expect) GTEST_SKIP() << "run by FaultEnv.* with the variable set";
  Pool pool;  // the first pool of the process reads the variable
  std::vector<bp_block *> held;
  std::vector<bool> failed = Gets(pool, 10, 8, &held);
  PutAll(&held);
  std::string got;
  for (bool f : failed) got += f ? 'x' : '.';
  EXPECT_EQ(got, expect);
}

TEST(FaultEnv, VariableIsReadAtTheFirstPool) {
  EXPECT_EQ(RunChild("every:3,after:2", "....x..x"), 0);
  EXPECT_EQ(RunChild("prob:1:5,after:6", "......xx"), 0);
}

TEST(FaultEnv, MalformedVariableIsIgnored) {
  EXPECT_EQ(RunChild("every:zero", "........"), 0);
}

}  // namespace
