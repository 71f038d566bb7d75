// Tests for bufpool/objpool.c: objects are zeroed on get, counted while in
// use, put clears the caller's pointer; debug builds poison put objects
// with 0xA5 and abort on a double put.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <deque>
#include <string>
#include <mutex>
#include <thread>
#include <vector>

#include "bufpool/bufpool.h"
#include "bp_test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#define BP_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BP_TEST_ASAN 1
#endif
#endif
#ifdef BP_TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

using bptest::Pool;

namespace {

// An objpool for one test.
class ObjPool {
 public:
  ObjPool(bp_pool *pool, size_t size, const char *name = "obj") {
    op_ = bp_objpool_create(pool, name, size);
    if (!op_) {
      ADD_FAILURE() << "bp_objpool_create(" << size << ") failed, errno " << errno;
    }
  }
  ~ObjPool() {
    if (::testing::Test::HasFailure()) return;  // objects may still be out
    bp_objpool_destroy(&op_);
  }
  ObjPool(const ObjPool &) = delete;
  ObjPool &operator=(const ObjPool &) = delete;
  operator bp_objpool *() const { return op_; }

 private:
  bp_objpool *op_ = nullptr;
};

bool AllBytes(const void *p, size_t n, unsigned char v) {
  const unsigned char *c = static_cast<const unsigned char *>(p);
  for (size_t i = 0; i < n; i++)
    if (c[i] != v) return false;
  return true;
}

TEST(ObjPool, GetIsZeroedAfterAPreviousUserWroteToIt) {
  Pool pool;
  const size_t sizes[] = {1, 24, 200, 3000};
  for (size_t size : sizes) {
    SCOPED_TRACE(size);
    ObjPool op(pool, size);
    ASSERT_NE(static_cast<bp_objpool *>(op), nullptr);
    for (int round = 0; round < 4; round++) {
      std::vector<void *> v;
      for (int i = 0; i < 100; i++) {
        void *o = bp_objpool_get(op);
        ASSERT_NE(o, nullptr);
        ASSERT_TRUE(AllBytes(o, size, 0)) << "round " << round << " object " << i << " is dirty";
        std::memset(o, 0xC3, size);
        v.push_back(o);
      }
      for (void *&o : v) bp_objpool_put(op, &o);
    }
    // The most likely reuse: put and get one object right away.
    void *o = bp_objpool_get(op);
    ASSERT_NE(o, nullptr);
    std::memset(o, 0x7F, size);
    bp_objpool_put(op, &o);
    o = bp_objpool_get(op);
    ASSERT_NE(o, nullptr);
    EXPECT_TRUE(AllBytes(o, size, 0));
    bp_objpool_put(op, &o);
  }
}

TEST(ObjPool, InUseCountsObjectsHandedOut) {
  Pool pool;
  ObjPool op(pool, 64);
  EXPECT_EQ(bp_objpool_in_use(op), 0u);
  std::vector<void *> v;
  for (int i = 0; i < 300; i++) {
    v.push_back(bp_objpool_get(op));
    ASSERT_NE(v.back(), nullptr);
    EXPECT_EQ(bp_objpool_in_use(op), static_cast<uint64_t>(i + 1));
  }
  for (int i = 0; i < 300; i++) {
    bp_objpool_put(op, &v[static_cast<size_t>(i)]);
    EXPECT_EQ(bp_objpool_in_use(op), static_cast<uint64_t>(299 - i));
  }
}

TEST(ObjPool, PutSetsThePointerToNullAndAcceptsNull) {
  Pool pool;
  ObjPool op(pool, 48);
  struct Obj {
    uint64_t a[6];
  };
  Obj *o = static_cast<Obj *>(bp_objpool_get(op));
  ASSERT_NE(o, nullptr);
  o->a[5] = 42;
  bp_objpool_put(op, &o);  // typed pointer through the macro
  EXPECT_EQ(o, nullptr);
  EXPECT_EQ(bp_objpool_in_use(op), 0u);
  bp_objpool_put(op, &o);  // *objp == NULL: accepted, nothing happens
  EXPECT_EQ(o, nullptr);
  EXPECT_EQ(bp_objpool_in_use(op), 0u);
}

TEST(ObjPool, ObjectsAreDistinctAlignedAndDoNotOverlap) {
  Pool pool;
  const size_t sizes[] = {8, 24, 40, 200, 1000, 5000};
  for (size_t size : sizes) {
    SCOPED_TRACE(size);
    ObjPool op(pool, size);
    std::vector<void *> v;
    for (int i = 0; i < 400; i++) {
      void *o = bp_objpool_get(op);
      ASSERT_NE(o, nullptr);
      // Objects hold structs: a size that is a multiple of 8 gets an
      // 8-aligned object.
      EXPECT_EQ(reinterpret_cast<uintptr_t>(o) % 8, 0u);
      std::memset(o, i & 0xff, size);
      v.push_back(o);
    }
    for (size_t i = 0; i < v.size(); i++)
      ASSERT_TRUE(AllBytes(v[i], size, i & 0xff)) << "object " << i << " was overwritten";
    std::vector<void *> sorted = v;
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 1; i < sorted.size(); i++)
      ASSERT_GE(static_cast<char *>(sorted[i]) - static_cast<char *>(sorted[i - 1]),
                static_cast<ptrdiff_t>(size));
    for (void *&o : v) bp_objpool_put(op, &o);
  }
}

// Objects come from the pool's blocks, and destroy gives them back.
TEST(ObjPool, DrawsFromThePoolAndDestroyGivesTheBlocksBack) {
  Pool pool;
  bp_stats s0 = pool.stats();
  bp_objpool *op = bp_objpool_create(pool, "conn", 512);
  ASSERT_NE(op, nullptr);
  std::vector<void *> v;
  for (int i = 0; i < 1000; i++) v.push_back(bp_objpool_get(op));
  bp_stats s1 = pool.stats();
  EXPECT_GE(s1.bytes_in_use, s0.bytes_in_use + 1000 * 512) << "objects not drawn from the pool";
  for (void *&o : v) bp_objpool_put(op, &o);
  bp_objpool_destroy(&op);
  EXPECT_EQ(op, nullptr);
  bp_stats s2 = pool.stats();
  EXPECT_EQ(s2.blocks_in_use, s0.blocks_in_use);
  EXPECT_EQ(s2.bytes_in_use, s0.bytes_in_use);
  bp_objpool_destroy(&op);  // pointer to NULL
  bp_objpool_destroy(nullptr);
}

// The objpool's memory is the pool's: its limit bounds it.
TEST(ObjPool, GetFailsWhenThePoolIsExhausted) {
  const size_t limit = 256 * 1024;
  Pool pool(limit);
  ObjPool op(pool, 256);
  std::vector<void *> v;
  void *o = nullptr;
  for (int i = 0; i < 100000; i++) {
    o = bp_objpool_get(op);
    if (!o) break;
    v.push_back(o);
  }
  EXPECT_EQ(o, nullptr) << "the limit did not bound the objpool";
  EXPECT_LE(v.size() * 256, limit);
  EXPECT_GE(v.size(), 16u);
  EXPECT_EQ(bp_objpool_in_use(op), v.size());
  EXPECT_GE(pool.stats().enomem, 1u);
  // Putting one back makes one available.
  bp_objpool_put(op, &v.back());
  v.pop_back();
  o = bp_objpool_get(op);
  ASSERT_NE(o, nullptr);
  EXPECT_TRUE(AllBytes(o, 256, 0));
  v.push_back(o);
  for (void *&x : v) bp_objpool_put(op, &x);
  EXPECT_EQ(bp_objpool_in_use(op), 0u);
}

// Any thread may put: thread A gets, thread B writes and puts.
TEST(ObjPool, CrossThreadPut) {
  Pool pool;
  ObjPool op(pool, 96);
  const int rounds = 20000;
  std::mutex m;
  std::condition_variable cv;
  std::deque<void *> q;
  bool done = false;
  std::atomic<int> dirty{0};
  std::thread b([&] {
    for (;;) {
      std::unique_lock<std::mutex> l(m);
      cv.wait(l, [&] { return !q.empty() || done; });
      if (q.empty()) break;
      void *o = q.front();
      q.pop_front();
      l.unlock();
      std::memset(o, 0x11, 96);
      bp_objpool_put(op, &o);
    }
  });
  std::thread a([&] {
    for (int i = 0; i < rounds; i++) {
      void *o = bp_objpool_get(op);
      if (!o || !AllBytes(o, 96, 0)) dirty++;
      if (!o) continue;
      std::lock_guard<std::mutex> l(m);
      q.push_back(o);
      cv.notify_all();
    }
    std::lock_guard<std::mutex> l(m);
    done = true;
    cv.notify_all();
  });
  a.join();
  b.join();
  EXPECT_EQ(dirty.load(), 0);
  EXPECT_EQ(bp_objpool_in_use(op), 0u);
}

#ifndef NDEBUG

// Debug builds: a put object is poisoned with 0xA5. Under ASan the object
// may instead (or as well) be poisoned for ASan; such bytes cannot be read
// legally and must be reported poisoned.
TEST(ObjPoolDebug, PutPoisonsTheObjectWithA5) {
  Pool pool;
  const size_t size = 128;
  ObjPool op(pool, size);
  void *keep = bp_objpool_get(op);  // keeps the objpool's block alive
  ASSERT_NE(keep, nullptr);
  void *o = bp_objpool_get(op);
  ASSERT_NE(o, nullptr);
  std::memset(o, 0x42, size);
  unsigned char *p = static_cast<unsigned char *>(o);
  bp_objpool_put(op, &o);
  ASSERT_EQ(o, nullptr);
  size_t a5 = 0, asan = 0, other = 0;
  std::string bad;
  for (size_t i = 0; i < size; i++) {
#ifdef BP_TEST_ASAN
    if (__asan_address_is_poisoned(p + i)) {
      asan++;
      continue;
    }
#endif
    if (p[i] == 0xA5) {
      a5++;
    } else {
      other++;
      bad += " " + std::to_string(i);
    }
  }
  EXPECT_EQ(other, 0u) << "bytes of a put object neither 0xA5 nor ASan-poisoned (" << a5
                       << " were 0xA5, " << asan << " ASan-poisoned); offsets:" << bad;
  // The object comes back clean.
  o = bp_objpool_get(op);
  ASSERT_NE(o, nullptr);
  EXPECT_TRUE(AllBytes(o, size, 0));
  bp_objpool_put(op, &o);
  bp_objpool_put(op, &keep);
}

// Legitimate reuse is not mistaken for a double put, even when the user's
// bytes look like poison.
TEST(ObjPoolDebug, NoFalseDoublePut) {
  Pool pool;
  ObjPool op(pool, 64);
  for (int i = 0; i < 1000; i++) {
    void *o = bp_objpool_get(op);
    ASSERT_NE(o, nullptr);
    std::memset(o, 0xA5, 64);  // looks exactly like a put object
    bp_objpool_put(op, &o);
  }
  EXPECT_EQ(bp_objpool_in_use(op), 0u);
}

TEST(ObjPoolDeathTest, DoublePutAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Pool pool;
        bp_objpool *op = bp_objpool_create(pool, "dbl", 64);
        void *a = bp_objpool_get(op);
        void *keep = bp_objpool_get(op);
        void *b = a;
        bp_objpool_put(op, &a);
        fprintf(stderr, "first put done\n");
        bp_objpool_put(op, &b);  // the same object again
        (void)keep;
      },
      "first put done");  // it dies at the second put, not before
}

// The same object put twice with a get of another object in between.
TEST(ObjPoolDeathTest, DoublePutAfterOtherTrafficAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Pool pool;
        bp_objpool *op = bp_objpool_create(pool, "dbl", 200);
        void *a = bp_objpool_get(op);
        void *c = bp_objpool_get(op);
        void *b = a;
        bp_objpool_put(op, &a);
        bp_objpool_put(op, &c);
        void *d = bp_objpool_get(op);  // takes c (or a) again
        if (d == b) bp_objpool_put(op, &d);  // a was reused: free it again
        fprintf(stderr, "traffic done\n");
        bp_objpool_put(op, &b);  // a was already put
        (void)d;
      },
      "traffic done");
}

#endif  // NDEBUG

}  // namespace
