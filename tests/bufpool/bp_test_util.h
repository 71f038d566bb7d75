// Helpers shared by the bufpool suites (test-only; not part of bufpool).
#ifndef GEECACHE_TESTS_BUFPOOL_BP_TEST_UTIL_H
#define GEECACHE_TESTS_BUFPOOL_BP_TEST_UTIL_H

#include <gtest/gtest.h>

#include <sys/uio.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bufpool/bufpool.h"

namespace bptest {

// A pool for one test: created in the constructor, destroyed at scope exit.
// Destroying a pool with blocks in use aborts in debug builds, so a test
// that leaks a reference fails loudly here.
class Pool {
 public:
  explicit Pool(size_t limit = 0, const char *name = "test") {
    bp_pool_opts o{};
    o.name = name;
    o.limit = limit;
    p_ = bp_pool_create(&o);
    if (p_ == nullptr) {
      ADD_FAILURE() << "bp_pool_create failed, errno " << errno;
    }
  }
  ~Pool() {
    // After a failed assertion blocks may still be out; destroying would
    // abort (debug) and hide the failure report, so leak the pool instead.
    if (::testing::Test::HasFailure()) return;
    bp_pool_destroy(&p_);
  }
  Pool(const Pool &) = delete;
  Pool &operator=(const Pool &) = delete;

  bp_pool *get() const { return p_; }
  operator bp_pool *() const { return p_; }

  bp_stats stats() const {
    bp_stats s;
    std::memset(&s, 0xEE, sizeof s);  // every field must be written
    bp_pool_stats(p_, &s);
    return s;
  }

 private:
  bp_pool *p_ = nullptr;
};

// Total size (header included) of the class that serves `cap`.
inline size_t ClassSizeFor(size_t cap) {
  int cls = bp_class_of(cap);
  return cls < 0 ? 0 : bp_class_size(cls);
}

// Bytes biased towards the delimiters the parsers look for, so that find
// and find2 hit often; some bytes are arbitrary.
inline std::string RandBytes(std::mt19937_64 &rng, size_t n) {
  static const char alpha[] = "\r\nab";
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i++) {
    uint64_t r = rng();
    s[i] = (r % 10 < 7) ? alpha[(r >> 8) % 4] : static_cast<char>(r >> 16);
  }
  return s;
}

// A block of `pool` holding `bytes` at data+off (refcount 1, owned by the
// caller).
inline bp_block *FilledBlock(bp_pool *pool, const std::string &bytes,
                             size_t off = 0) {
  bp_block *b = bp_block_get(pool, off + bytes.size());
  if (b == nullptr) {
    ADD_FAILURE() << "bp_block_get(" << off + bytes.size() << ") failed";
    return nullptr;
  }
  if (!bytes.empty()) std::memcpy(bp_block_data(b) + off, bytes.data(), bytes.size());
  return b;
}

// All readable bytes of a chain, gathered through bp_chain_peek_iov (the
// no-copy reader), with nslices checked against the iovec count.
inline std::string ChainBytes(const bp_chain *c) {
  size_t len = bp_chain_len(c);
  size_t ns = bp_chain_nslices(c);
  if (len == 0) {
    EXPECT_EQ(ns, 0u) << "empty chain reports slices";
    return std::string();
  }
  std::vector<iovec> iov(ns ? ns : 1);
  int n = bp_chain_peek_iov(c, 0, len, iov.data(), static_cast<int>(ns));
  EXPECT_EQ(n, static_cast<int>(ns)) << "peek_iov of the whole chain vs nslices";
  std::string out;
  out.reserve(len);
  for (int i = 0; i < n; i++) {
    EXPECT_GT(iov[i].iov_len, 0u) << "empty iovec " << i;
    out.append(static_cast<const char *>(iov[i].iov_base), iov[i].iov_len);
  }
  EXPECT_EQ(out.size(), len);
  return out;
}

}  // namespace bptest

#endif
