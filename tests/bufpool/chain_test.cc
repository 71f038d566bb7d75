// Tests for bufpool/chain.c (the LinkBuffer): every reader operation at
// every split point of chains of 1..4 blocks, a model-based random test
// against a std::string, and the explicit zero-copy, iovec-limit, lifetime,
// I/O-glue and failure contracts.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <limits.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
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

#include "bufpool/bufpool.h"
#include "bp_test_util.h"

using bptest::ChainBytes;
using bptest::Pool;

namespace {

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

// Copy counters summed over the pools a test uses (a copy may be charged to
// the chain's pool or to the block's; the claim is about the total).
struct Copies {
  uint64_t view = 0, append = 0, out = 0;
  bool operator==(const Copies &o) const {
    return view == o.view && append == o.append && out == o.out;
  }
};
std::ostream &operator<<(std::ostream &os, const Copies &c) {
  return os << "{view " << c.view << ", append " << c.append << ", out " << c.out << "}";
}
Copies CopiesOf(std::initializer_list<const Pool *> pools) {
  Copies c;
  for (const Pool *p : pools) {
    bp_stats s = p->stats();
    c.view += s.copied_view_bytes;
    c.append += s.copied_append_bytes;
    c.out += s.copied_out_bytes;
  }
  return c;
}

// Where the bytes [off, off+n) of a chain lie, given its iovecs.
struct Span {
  int count = 0;          // iovecs overlapped
  bool contiguous = true; // consecutive iovecs adjacent in memory
  const char *first = nullptr;
};
Span Overlap(const std::vector<iovec> &segs, size_t off, size_t n) {
  Span sp;
  size_t pos = 0;
  const char *prev_end = nullptr;
  for (const iovec &v : segs) {
    size_t s = pos, e = pos + v.iov_len;
    pos = e;
    if (e <= off) continue;
    if (s >= off + n) break;
    const char *base = static_cast<const char *>(v.iov_base);
    if (sp.count == 0)
      sp.first = base + (off - s);
    else if (base != prev_end)
      sp.contiguous = false;
    prev_end = base + v.iov_len;
    sp.count++;
  }
  return sp;
}

std::vector<iovec> Segs(const bp_chain *c) {
  size_t ns = bp_chain_nslices(c);
  std::vector<iovec> v(ns);
  if (ns == 0) return v;
  int n = bp_chain_peek_iov(c, 0, bp_chain_len(c), v.data(), static_cast<int>(ns));
  EXPECT_EQ(n, static_cast<int>(ns));
  if (n < 0) n = 0;
  v.resize(static_cast<size_t>(n));
  return v;
}

ssize_t ModelFind(const std::string &m, size_t from, size_t limit, unsigned char b) {
  size_t lim = std::min(limit, m.size());
  if (from >= lim) return -ENOENT;
  size_t p = m.find(static_cast<char>(b), from);
  return (p != std::string::npos && p < lim) ? static_cast<ssize_t>(p) : -ENOENT;
}

ssize_t ModelFind2(const std::string &m, size_t from, size_t limit, unsigned char d0,
                   unsigned char d1) {
  size_t lim = std::min(limit, m.size());
  if (from >= lim) return -ENOENT;
  const char d[2] = {static_cast<char>(d0), static_cast<char>(d1)};
  size_t p = m.find(std::string(d, 2), from);
  return (p != std::string::npos && p + 2 <= lim) ? static_cast<ssize_t>(p) : -ENOENT;
}

// A chain whose pieces each sit in a block of their own (adopted at data+8,
// with '#' around them), so block boundaries land at known offsets.
struct Built {
  std::vector<bp_block *> blocks;
  std::vector<const char *> ptrs;  // where each piece's bytes are
  std::vector<size_t> starts;      // offset of each piece in the chain
};
Built BuildAdopted(bp_chain *c, bp_pool *dp, const std::string &s,
                   const std::vector<size_t> &lens) {
  Built b;
  size_t pos = 0;
  for (size_t len : lens) {
    bp_block *blk = bp_block_get(dp, len + 16);
    EXPECT_NE(blk, nullptr);
    if (!blk) return b;
    std::memset(bp_block_data(blk), '#', bp_block_cap(blk));
    std::memcpy(bp_block_data(blk) + 8, s.data() + pos, len);
    EXPECT_EQ(bp_chain_adopt(c, blk, 8, static_cast<uint32_t>(len)), 0);
    b.blocks.push_back(blk);
    b.ptrs.push_back(bp_block_data(blk) + 8);
    b.starts.push_back(pos);
    pos += len;
  }
  return b;
}

// ---------------------------------------------------------------------------
// Every operation at every split point across 1..4 blocks
// ---------------------------------------------------------------------------

// All ways to cut s into 1..4 non-empty pieces.
std::vector<std::vector<size_t>> Compositions(size_t len, int max_pieces) {
  std::vector<std::vector<size_t>> out;
  for (uint32_t mask = 0; mask < (1u << (len - 1)); mask++) {
    if (__builtin_popcount(mask) > max_pieces - 1) continue;
    std::vector<size_t> lens;
    size_t last = 0;
    for (size_t i = 1; i < len; i++) {
      if (mask & (1u << (i - 1))) {
        lens.push_back(i - last);
        last = i;
      }
    }
    lens.push_back(len - last);
    out.push_back(lens);
  }
  return out;
}

const std::string kSplitText = "x\r\ny\rz\n\r\n\r\nw";  // 12 bytes

TEST(ChainSplitPoints, ReadersAtEveryOffsetAndLength) {
  Pool dp, cp;
  const std::string &S = kSplitText;
  const size_t L = S.size();
  ASSERT_EQ(L, 12u);
  auto comps = Compositions(L, 4);
  ASSERT_EQ(comps.size(), 1u + 11u + 55u + 165u);  // C(11, 0..3)
  Copies c0 = CopiesOf({&dp, &cp});
  uint64_t want_view = 0, want_out = 0;
  for (const auto &lens : comps) {
    std::string where;
    for (size_t l : lens) where += std::to_string(l) + " ";
    SCOPED_TRACE("pieces " + where);
    bp_chain c;
    bp_chain_init(&c, cp);
    Built b = BuildAdopted(&c, dp, S, lens);
    ASSERT_EQ(b.blocks.size(), lens.size());
    ASSERT_EQ(bp_chain_len(&c), L);
    ASSERT_EQ(bp_chain_nslices(&c), lens.size());
    ASSERT_EQ(ChainBytes(&c), S);
    std::vector<iovec> segs = Segs(&c);
    for (size_t i = 0; i < segs.size(); i++) {
      ASSERT_EQ(segs[i].iov_base, b.ptrs[i]) << "peek copied piece " << i;
      ASSERT_EQ(segs[i].iov_len, lens[i]);
    }

    for (size_t off = 0; off <= L; off++) {
      if (off < L) {
        ASSERT_EQ(bp_chain_byte(&c, off), static_cast<unsigned char>(S[off]));
      }
      for (size_t n = 0; off + n <= L + 2; n++) {
        SCOPED_TRACE("off " + std::to_string(off) + " n " + std::to_string(n));
        bool fits = off + n <= L;
        std::vector<iovec> iov(8);
        if (!fits) {
          EXPECT_EQ(bp_chain_peek_iov(&c, off, n, iov.data(), 8), -EAGAIN);
          std::vector<char> scratch(n);
          EXPECT_EQ(bp_chain_view(&c, off, n, scratch.data()), nullptr);
          EXPECT_EQ(bp_chain_copy_out(&c, off, scratch.data(), n), -EAGAIN);
          bp_slice sl{};
          EXPECT_EQ(bp_chain_slice(&c, off, n, &sl), -EAGAIN);
          EXPECT_EQ(sl.blk, nullptr);
          continue;
        }
        if (n == 0) {
          EXPECT_EQ(bp_chain_peek_iov(&c, off, 0, iov.data(), 8), 0);
          continue;
        }
        Span sp = Overlap(segs, off, n);
        // peek: exactly the pieces overlapped, pointing into the blocks.
        int got = bp_chain_peek_iov(&c, off, n, iov.data(), sp.count);
        ASSERT_EQ(got, sp.count);
        std::string cat;
        for (int i = 0; i < got; i++) cat.append(static_cast<char *>(iov[i].iov_base), iov[i].iov_len);
        EXPECT_EQ(cat, S.substr(off, n));
        EXPECT_EQ(iov[0].iov_base, sp.first);
        if (sp.count > 1) {
          std::vector<iovec> small(static_cast<size_t>(sp.count - 1));
          EXPECT_EQ(bp_chain_peek_iov(&c, off, n, small.data(), sp.count - 1), -EMSGSIZE);
        }
        // view: in place for one block, else a counted copy into scratch.
        std::vector<char> scratch(n);
        const char *v = static_cast<const char *>(bp_chain_view(&c, off, n, scratch.data()));
        ASSERT_NE(v, nullptr);
        EXPECT_EQ(std::string(v, n), S.substr(off, n));
        if (sp.count == 1) {
          EXPECT_EQ(v, sp.first);
        } else {
          EXPECT_EQ(v, scratch.data());
          want_view += n;
        }
        // copy_out.
        std::vector<char> dst(n);
        EXPECT_EQ(bp_chain_copy_out(&c, off, dst.data(), n), 0);
        EXPECT_EQ(std::string(dst.data(), n), S.substr(off, n));
        want_out += n;
        // slice: within one block, or -EXDEV.
        bp_slice sl{};
        int rc = bp_chain_slice(&c, off, n, &sl);
        if (sp.count == 1) {
          ASSERT_EQ(rc, 0);
          EXPECT_EQ(sl.len, n);
          EXPECT_EQ(bp_slice_ptr(&sl), sp.first);
          EXPECT_EQ(std::string(bp_slice_ptr(&sl), sl.len), S.substr(off, n));
          bp_slice_release(&sl);
        } else {
          EXPECT_EQ(rc, -EXDEV);
          EXPECT_EQ(sl.blk, nullptr);
        }
      }
    }
    // find / find2 for every start and limit.
    const unsigned char bytes[] = {'\r', '\n', 'x', 'w', 'q'};
    const unsigned char pairs[][2] = {{'\r', '\n'}, {'\n', '\r'}, {'\r', '\r'}, {'n', 'w'}, {'\n', 'w'}};
    for (size_t from = 0; from <= L + 1; from++) {
      for (size_t limit = 0; limit <= L + 2; limit++) {
        for (unsigned char by : bytes)
          ASSERT_EQ(bp_chain_find(&c, from, limit, by), ModelFind(S, from, limit, by))
              << "find " << int(by) << " from " << from << " limit " << limit;
        for (auto &p : pairs)
          ASSERT_EQ(bp_chain_find2(&c, from, limit, p[0], p[1]),
                    ModelFind2(S, from, limit, p[0], p[1]))
              << "find2 " << int(p[0]) << "," << int(p[1]) << " from " << from
              << " limit " << limit;
      }
      EXPECT_EQ(bp_chain_find(&c, from, SIZE_MAX, '\n'), ModelFind(S, from, SIZE_MAX, '\n'));
      EXPECT_EQ(bp_chain_find2(&c, from, SIZE_MAX, '\r', '\n'),
                ModelFind2(S, from, SIZE_MAX, '\r', '\n'));
    }
    // write_iov with every max_iov.
    for (int mx = 1; mx <= static_cast<int>(lens.size()) + 1; mx++) {
      std::vector<iovec> iov(static_cast<size_t>(mx));
      size_t bytes_out = 0;
      int n = bp_chain_write_iov(&c, iov.data(), mx, &bytes_out);
      int want = std::min(mx, static_cast<int>(lens.size()));
      ASSERT_EQ(n, want);
      size_t sum = 0;
      for (int i = 0; i < n; i++) {
        EXPECT_EQ(iov[i].iov_base, b.ptrs[i]);
        EXPECT_EQ(iov[i].iov_len, lens[i]);
        sum += lens[i];
      }
      EXPECT_EQ(bytes_out, sum);
      EXPECT_EQ(bp_chain_write_iov(&c, iov.data(), mx, nullptr), want);
    }
    // Readers consumed nothing.
    EXPECT_EQ(bp_chain_len(&c), L);
    bp_chain_deinit(&c);
    EXPECT_EQ(bp_chain_len(&c), 0u);
  }
  Copies c1 = CopiesOf({&dp, &cp});
  EXPECT_EQ(c1.view - c0.view, want_view);
  EXPECT_EQ(c1.out - c0.out, want_out);
  EXPECT_EQ(c1.append, c0.append);
  EXPECT_EQ(dp.stats().blocks_in_use, 0u);
}

TEST(ChainSplitPoints, SkipAndCutAtEveryPoint) {
  Pool dp, cp;
  const std::string &S = kSplitText;
  const size_t L = S.size();
  Copies c0 = CopiesOf({&dp, &cp});
  for (const auto &lens : Compositions(L, 4)) {
    std::string where;
    for (size_t l : lens) where += std::to_string(l) + " ";
    SCOPED_TRACE("pieces " + where);
    for (size_t n = 0; n <= L + 1; n++) {
      SCOPED_TRACE("n " + std::to_string(n));
      // skip
      {
        bp_chain c;
        bp_chain_init(&c, cp);
        Built b = BuildAdopted(&c, dp, S, lens);
        int rc = bp_chain_skip(&c, n);
        if (n > L) {
          EXPECT_EQ(rc, -EAGAIN);
          EXPECT_EQ(ChainBytes(&c), S);
        } else {
          ASSERT_EQ(rc, 0);
          EXPECT_EQ(bp_chain_len(&c), L - n);
          EXPECT_EQ(ChainBytes(&c), S.substr(n));
          if (n < L) {
            // What is left is still the original memory.
            std::vector<iovec> segs = Segs(&c);
            size_t k = 0;
            while (b.starts[k] + lens[k] <= n) k++;
            ASSERT_FALSE(segs.empty());
            EXPECT_EQ(segs[0].iov_base, b.ptrs[k] + (n - b.starts[k]));
            EXPECT_EQ(segs.size(), lens.size() - k);
          }
        }
        bp_chain_deinit(&c);
      }
      // cut onto the end of a chain that already holds bytes
      {
        bp_chain src, dst;
        bp_chain_init(&src, cp);
        bp_chain_init(&dst, cp);
        Built b = BuildAdopted(&src, dp, S, lens);
        Built pre = BuildAdopted(&dst, dp, "<<", {2});
        int rc = bp_chain_cut(&src, n, &dst);
        if (n > L) {
          EXPECT_EQ(rc, -EAGAIN);
          EXPECT_EQ(ChainBytes(&src), S);
          EXPECT_EQ(ChainBytes(&dst), "<<");
        } else {
          ASSERT_EQ(rc, 0);
          EXPECT_EQ(ChainBytes(&src), S.substr(n));
          EXPECT_EQ(ChainBytes(&dst), "<<" + S.substr(0, n));
          // dst shares the original memory.
          std::vector<iovec> ds = Segs(&dst);
          if (n > 0) {
            ASSERT_GE(ds.size(), 2u);
            EXPECT_EQ(ds[1].iov_base, b.ptrs[0]);
          }
          // A piece split between the chains is referenced by both.
          for (size_t k = 0; k < lens.size(); k++) {
            bool split = b.starts[k] < n && n < b.starts[k] + lens[k];
            if (split) {
              EXPECT_EQ(bp_block_refs(b.blocks[k]), 2u) << "piece " << k;
            }
          }
          // Both remain usable: drain src, then dst.
          EXPECT_EQ(bp_chain_skip(&src, L - n), 0);
          EXPECT_EQ(bp_chain_len(&src), 0u);
          EXPECT_EQ(ChainBytes(&dst), "<<" + S.substr(0, n));
        }
        bp_chain_deinit(&src);
        bp_chain_deinit(&dst);
      }
    }
  }
  Copies c1 = CopiesOf({&dp, &cp});
  EXPECT_EQ(c1, c0) << "skip/cut copied bytes";
  EXPECT_EQ(dp.stats().blocks_in_use, 0u);
}

// ---------------------------------------------------------------------------
// Model-based random test: a chain and a std::string driven by the same
// seeded operations must agree after every one.
// ---------------------------------------------------------------------------

class ChainModel : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override {
    rng_.seed(GetParam());
    bp_chain_init(&c_, cp_);
    bp_chain_init(&o_, cp_);
    for (int i = 0; i < 4; i++) NewSource(i);
    base_ = CopiesOf({&dp_, &cp_});
  }
  void TearDown() override {
    CheckKept();
    bp_chain_deinit(&c_);
    bp_chain_deinit(&o_);
    for (auto &k : kept_) bp_slice_release(&k.s);
    kept_.clear();
    for (auto &s : srcs_) {
      if (s.b) CheckSource(s);
      bp_block_unref(s.b);
    }
    // Every adopted / referenced block was released exactly.
    EXPECT_EQ(dp_.stats().blocks_in_use, 0u);
  }

  struct Src {
    bp_block *b = nullptr;
    std::string bytes;
  };
  struct Kept {
    bp_slice s;
    std::string bytes;
  };

  size_t RandLen() {
    uint64_t r = rng_() % 1000;
    if (r < 2) return BP_MAX_CLASS_SIZE + rng_() % 100000;  // huge, rarely
    if (r < 450) return rng_() % 17;
    if (r < 800) return rng_() % 600;
    if (r < 960) return rng_() % 6000;
    return rng_() % 40000;
  }
  // An offset and a length in (or, sometimes, just past) the model.
  void RandRange(size_t len, size_t *off, size_t *n, bool allow_past = true) {
    *off = rng_() % (len + 1);
    if (allow_past && rng_() % 12 == 0) {
      *n = len - *off + 1 + rng_() % 3;
      return;
    }
    size_t room = len - *off;
    if (rng_() % 3 == 0)
      *n = rng_() % (std::min<size_t>(room, 40) + 1);
    else
      *n = rng_() % (room + 1);
  }

  void NewSource(int i) {
    if (srcs_.size() <= static_cast<size_t>(i)) srcs_.resize(static_cast<size_t>(i) + 1);
    Src &s = srcs_[static_cast<size_t>(i)];
    if (s.b) {
      CheckSource(s);
      bp_block_unref(s.b);
    }
    size_t cap = 500 + rng_() % 9000;
    s.bytes = bptest::RandBytes(rng_, cap);
    s.b = bptest::FilledBlock(dp_, s.bytes);
  }
  // The chain never writes into bytes it did not reserve itself.
  void CheckSource(const Src &s) {
    ASSERT_EQ(std::memcmp(bp_block_data(s.b), s.bytes.data(), s.bytes.size()), 0)
        << "a chain wrote into a block it only references";
  }
  void CheckKept() {
    for (const Kept &k : kept_)
      ASSERT_EQ(std::string(bp_slice_ptr(&k.s), k.s.len), k.bytes) << "a kept slice changed";
    for (const Src &s : srcs_) CheckSource(s);
  }
  void Verify(const char *op) {
    SCOPED_TRACE(op);
    ASSERT_EQ(bp_chain_len(&c_), mc_.size());
    ASSERT_EQ(ChainBytes(&c_), mc_);
    segs_ = Segs(&c_);
    max_len_ = std::max(max_len_, mc_.size());
    max_slices_ = std::max(max_slices_, segs_.size());
    ASSERT_EQ(bp_chain_len(&o_), mo_.size());
    if (step_ % 16 == 0) {
      ASSERT_EQ(ChainBytes(&o_), mo_);
    }
    Copies now = CopiesOf({&dp_, &cp_});
    Copies want{base_.view + want_.view, base_.append + want_.append, base_.out + want_.out};
    ASSERT_EQ(now, want) << "copy counters";
    if (step_ % 64 == 0) CheckKept();
  }

  void Step();

  Pool dp_, cp_;
  bp_chain c_, o_;
  std::string mc_, mo_;
  std::mt19937_64 rng_;
  std::vector<iovec> segs_;
  std::vector<Src> srcs_;
  std::deque<Kept> kept_;
  Copies base_, want_;
  uint64_t step_ = 0;
  uint64_t hits_[20] = {};
  size_t max_len_ = 0, max_slices_ = 0;
};

void ChainModel::Step() {
  size_t len = mc_.size();
  int op = static_cast<int>(rng_() % 19);
  // Keep the chain from growing without bound.
  if (len > 96 * 1024 && rng_() % 2) op = (rng_() % 2) ? 6 : 7;
  hits_[op]++;
  switch (op) {
    case 0: {  // append by copy
      std::string d = bptest::RandBytes(rng_, RandLen());
      ASSERT_EQ(bp_chain_append(&c_, d.data(), d.size()), 0);
      mc_ += d;
      want_.append += d.size();
      return Verify("append");
    }
    case 1: {  // append_ref of a slice of a source block
      Src &s = srcs_[rng_() % srcs_.size()];
      size_t off = rng_() % s.bytes.size();
      size_t n = 1 + rng_() % (s.bytes.size() - off);
      bp_slice sl{s.b, static_cast<uint32_t>(off), static_cast<uint32_t>(n)};
      ASSERT_EQ(bp_chain_append_ref(&c_, &sl), 0);
      mc_ += s.bytes.substr(off, n);
      return Verify("append_ref");
    }
    case 2: {  // adopt a block filled elsewhere
      size_t cap = (rng_() % 200 == 0) ? BP_MAX_CLASS_SIZE + rng_() % 5000 : 1 + rng_() % 9000;
      bp_block *b = bp_block_get(dp_, cap);
      ASSERT_NE(b, nullptr);
      std::memset(bp_block_data(b), static_cast<int>(rng_() & 0xff), bp_block_cap(b));
      size_t off = rng_() % cap;
      size_t n = 1 + rng_() % (cap - off);
      std::string d = bptest::RandBytes(rng_, n);
      std::memcpy(bp_block_data(b) + off, d.data(), n);
      ASSERT_EQ(bp_chain_adopt(&c_, b, static_cast<uint32_t>(off), static_cast<uint32_t>(n)), 0);
      mc_ += d;
      return Verify("adopt");
    }
    case 3: {  // reserve / commit, with writes past the commit
      size_t n = std::max<size_t>(1, RandLen());
      char *p = static_cast<char *>(bp_chain_reserve(&c_, n));
      ASSERT_NE(p, nullptr);
      size_t k = (rng_() % 3 == 0) ? n : rng_() % (n + 1);
      std::string d = bptest::RandBytes(rng_, k);
      if (k) std::memcpy(p, d.data(), k);
      std::memset(p + k, 'G', n - k);
      bp_chain_commit(&c_, k);
      mc_ += d;
      return Verify("reserve/commit");
    }
    case 4: {  // read_iov / read_commit
      int mx = 1 + static_cast<int>(rng_() % 2);
      std::vector<iovec> iov(static_cast<size_t>(mx));
      int n = bp_chain_read_iov(&c_, iov.data(), mx);
      ASSERT_GE(n, 1);
      ASSERT_LE(n, mx);
      size_t total = 0;
      for (int i = 0; i < n; i++) {
        ASSERT_GT(iov[i].iov_len, 0u);
        total += iov[i].iov_len;
      }
      uint64_t r = rng_() % 4;
      size_t k = r == 0 ? total : r == 1 ? 0 : rng_() % (total + 1);
      std::string d = bptest::RandBytes(rng_, k);
      size_t done = 0;
      for (int i = 0; i < n; i++) {
        size_t take = std::min(iov[i].iov_len, k - done);
        std::memcpy(iov[i].iov_base, d.data() + done, take);
        std::memset(static_cast<char *>(iov[i].iov_base) + take, 'R', iov[i].iov_len - take);
        done += take;
      }
      bp_chain_read_commit(&c_, k);
      mc_ += d;
      return Verify("read_iov/read_commit");
    }
    case 5: {  // write_iov + skip (what a writev wrote)
      int mx = (rng_() % 4 == 0) ? 1024 : 1 + static_cast<int>(rng_() % 6);
      std::vector<iovec> iov(static_cast<size_t>(mx));
      size_t bytes = 12345;
      int n = bp_chain_write_iov(&c_, iov.data(), mx, &bytes);
      int want = std::min(mx, static_cast<int>(segs_.size()));
      ASSERT_EQ(n, want);
      size_t sum = 0;
      for (int i = 0; i < n; i++) {
        ASSERT_EQ(iov[i].iov_base, segs_[i].iov_base);
        ASSERT_EQ(iov[i].iov_len, segs_[i].iov_len);
        sum += iov[i].iov_len;
      }
      ASSERT_EQ(bytes, sum);
      size_t k = (rng_() % 2) ? sum : rng_() % (sum + 1);
      ASSERT_EQ(bp_chain_skip(&c_, k), 0);
      mc_.erase(0, k);
      return Verify("write_iov+skip");
    }
    case 6: {  // skip
      size_t off, n;
      RandRange(len, &off, &n);
      n += off;  // from the start
      int rc = bp_chain_skip(&c_, n);
      if (n > len) {
        ASSERT_EQ(rc, -EAGAIN);
      } else {
        ASSERT_EQ(rc, 0);
        mc_.erase(0, n);
      }
      return Verify("skip");
    }
    case 7: {  // cut to the other chain
      size_t off, n;
      RandRange(len, &off, &n);
      n += off;
      int rc = bp_chain_cut(&c_, n, &o_);
      if (n > len) {
        ASSERT_EQ(rc, -EAGAIN);
      } else {
        ASSERT_EQ(rc, 0);
        mo_ += mc_.substr(0, n);
        mc_.erase(0, n);
      }
      if (mo_.size() > 128 * 1024) {
        bp_chain_deinit(&o_);
        mo_.clear();
      }
      return Verify("cut");
    }
    case 8: {  // append_chain, either way
      if (rng_() % 4) {
        bp_chain_append_chain(&c_, &o_);
        mc_ += mo_;
        mo_.clear();
      } else {
        bp_chain_append_chain(&o_, &c_);
        mo_ += mc_;
        mc_.clear();
      }
      EXPECT_EQ(ChainBytes(&o_), mo_);
      return Verify("append_chain");
    }
    case 9: {  // peek_iov
      size_t off, n;
      RandRange(len, &off, &n);
      if (off + n > len) {
        std::vector<iovec> iov(1024);
        ASSERT_EQ(bp_chain_peek_iov(&c_, off, n, iov.data(), 1024), -EAGAIN);
        return Verify("peek_iov past the end");
      }
      int mx = (rng_() % 3 == 0) ? 1024 : 1 + static_cast<int>(rng_() % 5);
      std::vector<iovec> iov(static_cast<size_t>(mx));
      int rc = bp_chain_peek_iov(&c_, off, n, iov.data(), mx);
      if (n == 0) {
        ASSERT_EQ(rc, 0);
        return Verify("peek_iov 0");
      }
      Span sp = Overlap(segs_, off, n);
      if (sp.count > mx) {
        ASSERT_EQ(rc, -EMSGSIZE);
      } else {
        ASSERT_EQ(rc, sp.count);
        ASSERT_EQ(iov[0].iov_base, sp.first);
        std::string cat;
        for (int i = 0; i < rc; i++) cat.append(static_cast<char *>(iov[i].iov_base), iov[i].iov_len);
        ASSERT_EQ(cat, mc_.substr(off, n));
      }
      return Verify("peek_iov");
    }
    case 10: {  // view
      size_t off, n;
      RandRange(len, &off, &n);
      if (n == 0) n = 1;
      std::vector<char> scratch(n);
      const char *v = static_cast<const char *>(bp_chain_view(&c_, off, n, scratch.data()));
      if (off + n > len) {
        ASSERT_EQ(v, nullptr);
        return Verify("view past the end");
      }
      ASSERT_NE(v, nullptr);
      ASSERT_EQ(std::memcmp(v, mc_.data() + off, n), 0);
      Span sp = Overlap(segs_, off, n);
      if (sp.count == 1) {
        ASSERT_EQ(v, sp.first) << "view of bytes in one block copied";
      } else if (!sp.contiguous) {
        ASSERT_EQ(v, scratch.data());
      }
      if (v == scratch.data()) want_.view += n;
      return Verify("view");
    }
    case 11: {  // copy_out
      size_t off, n;
      RandRange(len, &off, &n);
      std::vector<char> dst(n + 1);
      int rc = bp_chain_copy_out(&c_, off, dst.data(), n);
      if (off + n > len) {
        ASSERT_EQ(rc, -EAGAIN);
      } else {
        ASSERT_EQ(rc, 0);
        ASSERT_EQ(std::memcmp(dst.data(), mc_.data() + off, n), 0);
        want_.out += n;
      }
      return Verify("copy_out");
    }
    case 12: {  // find
      size_t from = rng_() % (len + 2);
      size_t limit = (rng_() % 4 == 0) ? SIZE_MAX : rng_() % (len + 3);
      static const unsigned char bs[] = {'\r', '\n', 'a', 'b', 0};
      unsigned char by = bs[rng_() % 5];
      ASSERT_EQ(bp_chain_find(&c_, from, limit, by), ModelFind(mc_, from, limit, by))
          << "from " << from << " limit " << limit << " byte " << int(by);
      return Verify("find");
    }
    case 13: {  // find2
      size_t from = rng_() % (len + 2);
      size_t limit = (rng_() % 4 == 0) ? SIZE_MAX : rng_() % (len + 3);
      static const unsigned char ps[][2] = {{'\r', '\n'}, {'\r', '\n'}, {'\n', '\r'}, {'a', 'a'}, {'b', '\r'}};
      const unsigned char *p = ps[rng_() % 5];
      ASSERT_EQ(bp_chain_find2(&c_, from, limit, p[0], p[1]),
                ModelFind2(mc_, from, limit, p[0], p[1]))
          << "from " << from << " limit " << limit;
      return Verify("find2");
    }
    case 14: {  // slice, kept for a while
      size_t off, n;
      RandRange(len, &off, &n);
      if (n == 0) n = 1;
      bp_slice sl{};
      int rc = bp_chain_slice(&c_, off, n, &sl);
      if (off + n > len) {
        ASSERT_EQ(rc, -EAGAIN);
        return Verify("slice past the end");
      }
      Span sp = Overlap(segs_, off, n);
      if (sp.count == 1) {
        ASSERT_EQ(rc, 0);
        ASSERT_EQ(bp_slice_ptr(&sl), sp.first) << "slice copied";
      } else if (!sp.contiguous) {
        ASSERT_EQ(rc, -EXDEV);
      }
      if (rc == 0) {
        ASSERT_EQ(sl.len, n);
        kept_.push_back({sl, mc_.substr(off, n)});
        if (kept_.size() > 40) {
          Kept &k = kept_.front();
          ASSERT_EQ(std::string(bp_slice_ptr(&k.s), k.s.len), k.bytes);
          bp_slice_release(&k.s);
          kept_.pop_front();
        }
      } else {
        ASSERT_EQ(rc, -EXDEV);
      }
      return Verify("slice");
    }
    case 15: {  // byte
      if (len) {
        size_t off = rng_() % len;
        ASSERT_EQ(bp_chain_byte(&c_, off), static_cast<unsigned char>(mc_[off]));
      }
      return Verify("byte");
    }
    case 16: {  // trim
      bp_chain_trim(&c_);
      return Verify("trim");
    }
    case 17: {  // append_slice: by copy below the threshold, else by reference
      Src &s = srcs_[rng_() % srcs_.size()];
      size_t off = rng_() % s.bytes.size();
      size_t n = 1 + rng_() % std::min<size_t>(s.bytes.size() - off, 2 * BP_COPY_THRESHOLD);
      bp_slice sl{s.b, static_cast<uint32_t>(off), static_cast<uint32_t>(n)};
      ASSERT_EQ(bp_chain_append_slice(&c_, &sl), 0);
      if (n < BP_COPY_THRESHOLD) want_.append += n;  // Verify checks the counter
      mc_ += s.bytes.substr(off, n);
      return Verify("append_slice");
    }
    case 18: {  // the other chain: drop it, or replace a source block
      if (rng_() % 2) {
        bp_chain_deinit(&o_);
        mo_.clear();
      } else {
        NewSource(static_cast<int>(rng_() % srcs_.size()));
      }
      return Verify("other");
    }
  }
}

TEST_P(ChainModel, RandomOperationsMatchAStringModel) {
  const int kSteps = 4000;
  for (step_ = 1; step_ <= kSteps; step_++) {
    Step();
    if (HasFatalFailure()) {
      ADD_FAILURE() << "seed " << GetParam() << " step " << step_;
      return;
    }
  }
  for (int i = 0; i < 19; i++) {
    EXPECT_GT(hits_[i], 0u) << "op " << i << " never ran";
  }
  CheckKept();
  RecordProperty("max_len", static_cast<int>(max_len_));
  RecordProperty("max_slices", static_cast<int>(max_slices_));
  EXPECT_GT(max_slices_, 20u) << "the chain never spanned many blocks";
}

INSTANTIATE_TEST_SUITE_P(Seeds, ChainModel, ::testing::Values(1, 2, 3, 42, 20240601));

// ---------------------------------------------------------------------------
// Explicit contracts
// ---------------------------------------------------------------------------

TEST(ChainFind, CrLfSplitAcrossTwoBlocks) {
  Pool dp, cp;
  bp_chain c;
  bp_chain_init(&c, cp);
  const std::string s = "GET foo\r\nbar";
  BuildAdopted(&c, dp, s, {8, 4});  // "GET foo\r" | "\nbar"
  EXPECT_EQ(bp_chain_nslices(&c), 2u);
  EXPECT_EQ(bp_chain_find2(&c, 0, SIZE_MAX, '\r', '\n'), 7);
  EXPECT_EQ(bp_chain_find2(&c, 7, SIZE_MAX, '\r', '\n'), 7);
  EXPECT_EQ(bp_chain_find2(&c, 8, SIZE_MAX, '\r', '\n'), -ENOENT);
  EXPECT_EQ(bp_chain_find2(&c, 0, 9, '\r', '\n'), 7);
  EXPECT_EQ(bp_chain_find2(&c, 0, 8, '\r', '\n'), -ENOENT);  // '\n' is past the limit
  EXPECT_EQ(bp_chain_find(&c, 0, SIZE_MAX, '\n'), 8);
  EXPECT_EQ(bp_chain_find(&c, 0, 8, '\n'), -ENOENT);
  bp_chain_deinit(&c);

  // Split across three blocks with the delimiter alone in the middle one.
  bp_chain_init(&c, cp);
  BuildAdopted(&c, dp, "ab\r\ncd", {3, 1, 2});  // "ab\r" | "\n" | "cd"
  EXPECT_EQ(bp_chain_find2(&c, 0, SIZE_MAX, '\r', '\n'), 2);
  EXPECT_EQ(bp_chain_find2(&c, 0, SIZE_MAX, '\n', 'c'), 3);
  bp_chain_deinit(&c);
}

TEST(ChainView, CopiesOnlyWhenTheBytesSpanBlocks) {
  Pool dp, cp;
  bp_chain c;
  bp_chain_init(&c, cp);
  std::string s(3000, 'v');
  for (size_t i = 0; i < s.size(); i++) s[i] = static_cast<char>(i * 7);
  Built b = BuildAdopted(&c, dp, s, {1000, 1000, 1000});
  std::vector<char> scratch(2000);

  Copies c0 = CopiesOf({&dp, &cp});
  const char *v = static_cast<const char *>(bp_chain_view(&c, 1100, 500, scratch.data()));
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v, b.ptrs[1] + 100);  // in place
  EXPECT_EQ(CopiesOf({&dp, &cp}), c0) << "an in-block view copied";

  const size_t n = 300;
  v = static_cast<const char *>(bp_chain_view(&c, 850, n, scratch.data()));
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v, scratch.data());
  EXPECT_EQ(std::string(v, n), s.substr(850, n));
  Copies c1 = CopiesOf({&dp, &cp});
  EXPECT_EQ(c1.view - c0.view, n);
  EXPECT_EQ(c1.append, c0.append);
  EXPECT_EQ(c1.out, c0.out);

  // Across all three blocks.
  v = static_cast<const char *>(bp_chain_view(&c, 900, 1200, scratch.data()));
  ASSERT_EQ(v, scratch.data());
  EXPECT_EQ(std::string(v, 1200), s.substr(900, 1200));
  EXPECT_EQ(CopiesOf({&dp, &cp}).view - c1.view, 1200u);
  bp_chain_deinit(&c);
}

// Peeking, slicing, write_iov-ing, cutting and moving a multi-block chain
// copy nothing: every copy counter is unchanged and every iovec points into
// the blocks the bytes were put in.
TEST(ChainZeroCopy, MultiBlockReadersCopyNothing) {
  Pool dp, cp;
  bp_chain c, d;
  bp_chain_init(&c, cp);
  bp_chain_init(&d, cp);
  std::mt19937_64 rng(5);
  const std::string s = bptest::RandBytes(rng, 20000);
  Built b = BuildAdopted(&c, dp, s, {4000, 4000, 4000, 4000, 4000});
  Copies c0 = CopiesOf({&dp, &cp});

  std::vector<iovec> iov(5);
  ASSERT_EQ(bp_chain_peek_iov(&c, 0, s.size(), iov.data(), 5), 5);
  for (int i = 0; i < 5; i++) {
    EXPECT_EQ(iov[i].iov_base, b.ptrs[i]);
  }
  ASSERT_EQ(bp_chain_peek_iov(&c, 3000, 6000, iov.data(), 5), 3);
  EXPECT_EQ(iov[0].iov_base, b.ptrs[0] + 3000);
  EXPECT_EQ(iov[2].iov_base, b.ptrs[2]);
  EXPECT_EQ(iov[2].iov_len, 1000u);

  size_t bytes = 0;
  ASSERT_EQ(bp_chain_write_iov(&c, iov.data(), 5, &bytes), 5);
  EXPECT_EQ(bytes, s.size());
  for (int i = 0; i < 5; i++) {
    EXPECT_EQ(iov[i].iov_base, b.ptrs[i]);
  }

  bp_slice sl{};
  ASSERT_EQ(bp_chain_slice(&c, 4100, 3900, &sl), 0);
  EXPECT_EQ(bp_slice_ptr(&sl), b.ptrs[1] + 100);
  EXPECT_EQ(bp_block_refs(b.blocks[1]), 2u);

  std::vector<char> scratch(100);
  EXPECT_EQ(bp_chain_view(&c, 8100, 100, scratch.data()), b.ptrs[2] + 100);

  ASSERT_EQ(bp_chain_cut(&c, 6000, &d), 0);  // splits block 1
  EXPECT_EQ(bp_block_refs(b.blocks[1]), 3u);
  ASSERT_EQ(bp_chain_write_iov(&d, iov.data(), 5, &bytes), 2);
  EXPECT_EQ(iov[0].iov_base, b.ptrs[0]);
  EXPECT_EQ(iov[1].iov_base, b.ptrs[1]);
  EXPECT_EQ(iov[1].iov_len, 2000u);
  ASSERT_EQ(bp_chain_write_iov(&c, iov.data(), 5, &bytes), 4);
  EXPECT_EQ(iov[0].iov_base, b.ptrs[1] + 2000);

  ASSERT_EQ(bp_chain_append_ref(&d, &sl), 0);
  bp_chain_append_chain(&d, &c);
  EXPECT_EQ(bp_chain_len(&c), 0u);
  EXPECT_EQ(ChainBytes(&d), s.substr(0, 6000) + s.substr(4100, 3900) + s.substr(6000));
  ASSERT_EQ(bp_chain_skip(&d, 5000), 0);

  EXPECT_EQ(CopiesOf({&dp, &cp}), c0) << "a reader copied bytes";
  bp_slice_release(&sl);
  bp_chain_deinit(&c);
  bp_chain_deinit(&d);
  EXPECT_EQ(dp.stats().blocks_in_use, 0u);
}

// More slices than IOV_MAX: write_iov hands out at most max_iov, and a
// real writev accepts them.
TEST(ChainIov, WriteIovRespectsMaxIov) {
  Pool dp, cp;
  bp_chain c;
  bp_chain_init(&c, cp);
  const int nsl = IOV_MAX + 100;
  bp_block *b = bp_block_get(dp, 2 * nsl);
  ASSERT_NE(b, nullptr);
  std::string want;
  for (int i = 0; i < nsl; i++) {
    bp_block_data(b)[2 * i] = static_cast<char>('A' + i % 26);
    bp_block_data(b)[2 * i + 1] = '-';
    bp_slice sl{b, static_cast<uint32_t>(2 * i), 1};  // not adjacent: no merging
    ASSERT_EQ(bp_chain_append_ref(&c, &sl), 0);
    want += static_cast<char>('A' + i % 26);
  }
  EXPECT_EQ(bp_chain_nslices(&c), static_cast<size_t>(nsl));
  EXPECT_EQ(bp_block_refs(b), static_cast<uint32_t>(nsl + 1));

  std::vector<iovec> iov(IOV_MAX);
  EXPECT_EQ(bp_chain_peek_iov(&c, 0, bp_chain_len(&c), iov.data(), IOV_MAX), -EMSGSIZE);
  size_t bytes = 0;
  int n = bp_chain_write_iov(&c, iov.data(), IOV_MAX, &bytes);
  ASSERT_EQ(n, IOV_MAX);
  EXPECT_EQ(bytes, static_cast<size_t>(IOV_MAX));
  for (int i = 0; i < n; i++) {
    EXPECT_EQ(iov[i].iov_base, bp_block_data(b) + 2 * i);
  }

  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_EQ(writev(fds[1], iov.data(), n), static_cast<ssize_t>(bytes));
  ASSERT_EQ(bp_chain_skip(&c, bytes), 0);
  n = bp_chain_write_iov(&c, iov.data(), IOV_MAX, &bytes);
  ASSERT_EQ(n, 100);
  EXPECT_EQ(bytes, 100u);
  ASSERT_EQ(writev(fds[1], iov.data(), n), 100);
  ASSERT_EQ(bp_chain_skip(&c, bytes), 0);
  EXPECT_EQ(bp_chain_write_iov(&c, iov.data(), IOV_MAX, &bytes), 0);
  EXPECT_EQ(bytes, 0u);
  std::string got(static_cast<size_t>(nsl), '\0');
  ASSERT_EQ(read(fds[0], got.data(), got.size()), nsl);
  EXPECT_EQ(got, want);
  close(fds[0]);
  close(fds[1]);
  EXPECT_EQ(bp_block_refs(b), 1u);
  bp_block_unref(b);
  bp_chain_deinit(&c);
}

// readv into the offered space, then read_commit: the bytes the kernel
// wrote are the chain's bytes.
TEST(ChainIov, ReadvIntoTheOfferedSpace) {
  Pool cp;
  bp_chain c;
  bp_chain_init(&c, cp);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::mt19937_64 rng(11);
  std::string all;
  for (int round = 0; round < 20; round++) {
    std::string msg = bptest::RandBytes(rng, 1 + rng() % 20000);
    ASSERT_EQ(write(fds[1], msg.data(), msg.size()), static_cast<ssize_t>(msg.size()));
    size_t got = 0;
    while (got < msg.size()) {
      iovec iov[2];
      int n = bp_chain_read_iov(&c, iov, 2);
      ASSERT_GE(n, 1);
      ASSERT_LE(n, 2);
      ssize_t r = readv(fds[0], iov, n);
      ASSERT_GT(r, 0);
      bp_chain_read_commit(&c, static_cast<size_t>(r));
      got += static_cast<size_t>(r);
    }
    all += msg;
    ASSERT_EQ(ChainBytes(&c), all);
    if (round % 3 == 2) {  // a consumer takes part of it
      size_t k = rng() % (all.size() + 1);
      ASSERT_EQ(bp_chain_skip(&c, k), 0);
      all.erase(0, k);
    }
  }
  EXPECT_EQ(ChainBytes(&c), all);
  close(fds[0]);
  close(fds[1]);
  bp_chain_deinit(&c);
}

TEST(ChainIov, ReadSizeAdapts) {
  Pool cp;
  bp_chain c;
  bp_chain_init(&c, cp);
  // The offer of an empty, trimmed chain is one new block of the read size.
  auto read_once = [&](bool fill) -> size_t {
    iovec iov[2];
    int n = bp_chain_read_iov(&c, iov, 2);
    EXPECT_GE(n, 1);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
      std::memset(iov[i].iov_base, 'r', iov[i].iov_len);
      total += iov[i].iov_len;
    }
    bp_chain_read_commit(&c, fill ? total : 1);
    EXPECT_EQ(bp_chain_skip(&c, bp_chain_len(&c)), 0);
    bp_chain_trim(&c);
    return total;
  };
  size_t first = read_once(true);
  size_t peak = first;
  for (int i = 0; i < 12; i++) peak = std::max(peak, read_once(true));
  EXPECT_GT(peak, first) << "reads that fill the offer did not grow it";
  size_t last = peak;
  for (int i = 0; i < 64; i++) last = read_once(false);
  EXPECT_LT(last, peak) << "reads that use little did not shrink the offer";
  bp_chain_deinit(&c);
}

TEST(ChainIov, ReadIovWithOneIovec) {
  Pool cp;
  bp_chain c;
  bp_chain_init(&c, cp);
  ASSERT_EQ(bp_chain_append(&c, "abc", 3), 0);
  iovec iov[1];
  ASSERT_EQ(bp_chain_read_iov(&c, iov, 1), 1);
  ASSERT_GT(iov[0].iov_len, 0u);
  std::memcpy(iov[0].iov_base, "d", 1);
  bp_chain_read_commit(&c, 1);
  EXPECT_EQ(ChainBytes(&c), "abcd");
  bp_chain_deinit(&c);
}

// An idle chain pins no memory once trimmed.
TEST(ChainIov, TrimLeavesAnIdleChainHoldingNothing) {
  Pool cp;
  bp_chain c;
  bp_chain_init(&c, cp);
  auto cycle = [&] {
    iovec iov[2];
    int n = bp_chain_read_iov(&c, iov, 2);
    ASSERT_GE(n, 1);
    std::memset(iov[0].iov_base, 'x', std::min<size_t>(iov[0].iov_len, 10));
    bp_chain_read_commit(&c, std::min<size_t>(iov[0].iov_len, 10));
    ASSERT_EQ(bp_chain_skip(&c, bp_chain_len(&c)), 0);
    bp_chain_trim(&c);
  };
  cycle();  // warm up whatever the chain keeps for its nodes
  bp_stats s0 = cp.stats();
  for (int i = 0; i < 5; i++) cycle();
  bp_stats s1 = cp.stats();
  EXPECT_EQ(s1.blocks_in_use, s0.blocks_in_use);
  EXPECT_EQ(s1.bytes_in_use, s0.bytes_in_use);
  // A read prepared but never used is dropped too.
  iovec iov[2];
  ASSERT_GE(bp_chain_read_iov(&c, iov, 2), 1);
  EXPECT_GT(cp.stats().bytes_in_use, s0.bytes_in_use);
  bp_chain_trim(&c);
  EXPECT_EQ(cp.stats().bytes_in_use, s0.bytes_in_use);
  // And a reservation never committed.
  ASSERT_NE(bp_chain_reserve(&c, 5000), nullptr);
  bp_chain_trim(&c);
  EXPECT_EQ(cp.stats().bytes_in_use, s0.bytes_in_use);
  EXPECT_EQ(bp_chain_len(&c), 0u);
  bp_chain_deinit(&c);
}

// A chain whose bytes were cut away by reference still shares its tail
// block with the cut: bp_chain_tail_shared says so (netpoll then keeps the
// tail rather than trimming it), and reads go on in the same block.
TEST(ChainIov, TailSharedAfterACutAndReadsContinueInIt) {
  Pool cp;
  bp_chain in, out;
  bp_chain_init(&in, cp);
  bp_chain_init(&out, cp);
  auto read = [&](const std::string &s) {
    iovec iov[2];
    ASSERT_GE(bp_chain_read_iov(&in, iov, 2), 1);
    ASSERT_GE(iov[0].iov_len, s.size());
    std::memcpy(iov[0].iov_base, s.data(), s.size());
    bp_chain_read_commit(&in, s.size());
  };
  EXPECT_FALSE(bp_chain_tail_shared(&in)) << "an empty chain";
  read("first");
  EXPECT_FALSE(bp_chain_tail_shared(&in)) << "its block is the chain's alone";
  EXPECT_FALSE(bp_chain_was_cut(&in));
  ASSERT_EQ(bp_chain_cut(&in, 5, &out), 0);
  EXPECT_EQ(bp_chain_len(&in), 0u);
  EXPECT_TRUE(bp_chain_tail_shared(&in));
  EXPECT_TRUE(bp_chain_was_cut(&in));
  EXPECT_FALSE(bp_chain_was_cut(&out));
  bp_stats s0 = cp.stats();
  read("second");
  EXPECT_EQ(cp.stats().blocks_in_use, s0.blocks_in_use) << "a new block for 6 bytes";
  ASSERT_EQ(bp_chain_cut(&in, 6, &out), 0);
  EXPECT_EQ(ChainBytes(&out), "firstsecond");
  iovec o[4];
  EXPECT_EQ(bp_chain_write_iov(&out, o, 4, nullptr), 2);
  EXPECT_EQ(static_cast<char *>(o[0].iov_base) + 5, o[1].iov_base) << "not side by side";
  // Once the output lets go, the tail is the chain's alone again.
  bp_chain_deinit(&out);
  EXPECT_FALSE(bp_chain_tail_shared(&in));
  // Skipped (consumed) rather than cut: not shared either.
  read("third");
  ASSERT_EQ(bp_chain_skip(&in, 5), 0);
  EXPECT_FALSE(bp_chain_tail_shared(&in));
  // A reset chain starts over: not cut from, and a chain only skipped
  // never is.
  bp_chain_reset(&in);
  EXPECT_FALSE(bp_chain_was_cut(&in));
  read("fourth");
  ASSERT_EQ(bp_chain_skip(&in, 6), 0);
  EXPECT_FALSE(bp_chain_was_cut(&in));
  bp_chain_deinit(&in);
}

// A slice taken from a chain keeps its bytes after the chain is deinit'ed
// and its pool has served other chains.
TEST(ChainLifetime, SliceSurvivesDeinitAndPoolReuse) {
  Pool dp, cp;
  bp_chain c;
  bp_chain_init(&c, cp);
  std::mt19937_64 rng(3);
  std::string s = bptest::RandBytes(rng, 9000);
  BuildAdopted(&c, dp, s, {3000, 3000, 3000});
  std::string tail = bptest::RandBytes(rng, 500);
  ASSERT_EQ(bp_chain_append(&c, tail.data(), tail.size()), 0);  // chain-owned block
  bp_slice a{}, t{};
  ASSERT_EQ(bp_chain_slice(&c, 3500, 1000, &a), 0);
  ASSERT_EQ(bp_chain_slice(&c, 9100, 300, &t), 0);
  bp_chain_deinit(&c);
  for (int i = 0; i < 50; i++) {  // reuse both pools
    bp_chain x;
    bp_chain_init(&x, cp);
    std::string junk(7000, static_cast<char>(i));
    ASSERT_EQ(bp_chain_append(&x, junk.data(), junk.size()), 0);
    bp_block *blk = bp_block_get(dp, 3000);
    std::memset(bp_block_data(blk), 0xEE, bp_block_cap(blk));
    bp_block_unref(blk);
    bp_chain_deinit(&x);
  }
  // The chain reused via the same struct must not touch them either.
  bp_chain_init(&c, cp);
  std::string junk(20000, 'J');
  ASSERT_EQ(bp_chain_append(&c, junk.data(), junk.size()), 0);
  EXPECT_EQ(std::string(bp_slice_ptr(&a), a.len), s.substr(3500, 1000));
  EXPECT_EQ(std::string(bp_slice_ptr(&t), t.len), tail.substr(100, 300));
  bp_chain_deinit(&c);
  bp_slice_release(&a);
  bp_slice_release(&t);
  EXPECT_EQ(dp.stats().blocks_in_use, 0u);
}

// A chain appends after a slice it references without writing into the
// referenced block's other bytes.
TEST(ChainWriter, AppendRefNeverWritesIntoTheReferencedBlock) {
  Pool dp, cp;
  bp_block *b = bp_block_get(dp, 4000);
  ASSERT_NE(b, nullptr);
  std::memset(bp_block_data(b), 'S', bp_block_cap(b));
  std::string snap(bp_block_data(b), bp_block_cap(b));
  bp_chain c;
  bp_chain_init(&c, cp);
  bp_slice sl{b, 0, 10};
  ASSERT_EQ(bp_chain_append_ref(&c, &sl), 0);
  EXPECT_EQ(bp_block_refs(b), 2u);
  ASSERT_EQ(bp_chain_append(&c, "xyz", 3), 0);
  char *p = static_cast<char *>(bp_chain_reserve(&c, 100));
  ASSERT_NE(p, nullptr);
  std::memset(p, 'P', 100);
  bp_chain_commit(&c, 100);
  iovec iov[2];
  int n = bp_chain_read_iov(&c, iov, 2);
  ASSERT_GE(n, 1);
  std::memset(iov[0].iov_base, 'R', iov[0].iov_len);
  bp_chain_read_commit(&c, iov[0].iov_len);
  bp_slice small{b, 20, 5};
  ASSERT_EQ(bp_chain_append_slice(&c, &small), 0);
  EXPECT_EQ(std::string(bp_block_data(b), bp_block_cap(b)), snap);
  EXPECT_EQ(ChainBytes(&c).substr(0, 113), std::string(10, 'S') + "xyz" + std::string(100, 'P'));
  bp_chain_deinit(&c);
  EXPECT_EQ(bp_block_refs(b), 1u);
  bp_block_unref(b);
}

// Replies alternate header bytes and values by reference: the headers after
// each reference continue in the same write block, so a pipeline of 16
// replies takes one write block, not 16; trimming the idle chain gives it
// back.
TEST(ChainWriter, WritesAfterAReferenceContinueInTheSameBlock) {
  Pool dp, cp;
  bp_block *v = bp_block_get(dp, 64);
  ASSERT_NE(v, nullptr);
  std::memset(bp_block_data(v), 'V', 8);
  bp_chain c;
  bp_chain_init(&c, cp);
  std::string want;
  for (int i = 0; i < 16; i++) {
    char h[24];
    std::memset(h, 'a' + i, sizeof h);
    ASSERT_EQ(bp_chain_append(&c, h, sizeof h), 0);
    bp_slice sl{v, 0, 8};
    ASSERT_EQ(bp_chain_append_ref(&c, &sl), 0);
    want += std::string(h, sizeof h) + std::string(8, 'V');
  }
  EXPECT_EQ(ChainBytes(&c), want);
  iovec iov[32];
  ASSERT_EQ(bp_chain_write_iov(&c, iov, 32, nullptr), 32);
  for (int i = 2; i < 32; i += 2)  // header i/2 right after header i/2 - 1
    EXPECT_EQ(static_cast<char *>(iov[i].iov_base),
              static_cast<char *>(iov[i - 2].iov_base) + 24) << i;
  bp_stats st;
  bp_pool_stats(cp, &st);
  // 32 nodes (smallest class) + 1 write block; the write block is held by
  // its 16 header nodes and by the chain, for the next reply.
  EXPECT_EQ(st.blocks_in_use, 33u);
  ASSERT_EQ(bp_chain_skip(&c, bp_chain_len(&c)), 0);
  bp_chain_trim(&c);
  bp_pool_stats(cp, &st);
  EXPECT_EQ(st.blocks_in_use, 0u);
  EXPECT_EQ(bp_block_refs(v), 1u);
  bp_chain_deinit(&c);
  bp_block_unref(v);
}

// A write that does not fit what is left of the kept block takes a new one
// and lets the old one go.
TEST(ChainWriter, AKeptWriteBlockTooSmallIsReleased) {
  Pool cp;
  Pool dp;
  bp_block *v = bp_block_get(dp, 64);
  ASSERT_NE(v, nullptr);
  bp_chain c;
  bp_chain_init(&c, cp);
  ASSERT_EQ(bp_chain_append(&c, "hdr", 3), 0);
  bp_slice sl{v, 0, 8};
  ASSERT_EQ(bp_chain_append_ref(&c, &sl), 0);
  std::string big(8000, 'b');
  ASSERT_EQ(bp_chain_append(&c, big.data(), big.size()), 0);
  bp_stats st;
  bp_pool_stats(cp, &st);
  EXPECT_EQ(st.blocks_in_use, 5u);  // 3 nodes, the first and the big block
  ASSERT_EQ(bp_chain_skip(&c, 3), 0);  // the first block is free now
  bp_pool_stats(cp, &st);
  EXPECT_EQ(st.blocks_in_use, 3u);
  EXPECT_EQ(ChainBytes(&c).substr(8), big);
  bp_chain_deinit(&c);
  bp_block_unref(v);
}

// The same when the block was adopted while someone else still holds a
// reference to it (the chain reserved none of its free space).
TEST(ChainWriter, AdoptedSharedBlockIsNotWrittenPastItsBytes) {
  Pool dp, cp;
  bp_block *b = bp_block_get(dp, 4000);
  ASSERT_NE(b, nullptr);
  std::memset(bp_block_data(b), 'S', bp_block_cap(b));
  std::string snap(bp_block_data(b), bp_block_cap(b));
  bp_block_ref(b);  // ours; the other goes to the chain
  bp_chain c;
  bp_chain_init(&c, cp);
  ASSERT_EQ(bp_chain_adopt(&c, b, 0, 10), 0);
  ASSERT_EQ(bp_chain_append(&c, "xyz", 3), 0);
  char *p = static_cast<char *>(bp_chain_reserve(&c, 50));
  ASSERT_NE(p, nullptr);
  std::memset(p, 'P', 50);
  bp_chain_commit(&c, 50);
  EXPECT_EQ(std::string(bp_block_data(b), bp_block_cap(b)), snap);
  EXPECT_EQ(ChainBytes(&c), std::string(10, 'S') + "xyz" + std::string(50, 'P'));
  bp_chain_deinit(&c);
  bp_block_unref(b);
}

TEST(ChainWriter, AppendSliceCopiesSmallAndReferencesLarge) {
  Pool dp, cp;
  const size_t T = BP_COPY_THRESHOLD;
  bp_block *b = bp_block_get(dp, 4 * T);
  ASSERT_NE(b, nullptr);
  for (size_t i = 0; i < 4 * T; i++) bp_block_data(b)[i] = static_cast<char>('a' + i % 26);
  const std::string blk(bp_block_data(b), 4 * T);
  bp_chain c;
  bp_chain_init(&c, cp);
  Copies c0 = CopiesOf({&dp, &cp});
  // Below the threshold: copied, even into an empty chain.
  bp_slice small{b, 0, static_cast<uint32_t>(T - 1)};
  ASSERT_EQ(bp_chain_append_slice(&c, &small), 0);
  EXPECT_EQ(bp_block_refs(b), 1u) << "a small slice was referenced";
  Copies c1 = CopiesOf({&dp, &cp});
  EXPECT_EQ(c1.append - c0.append, T - 1);
  bp_slice tiny{b, 7, 3};
  ASSERT_EQ(bp_chain_append_slice(&c, &tiny), 0);
  EXPECT_EQ(bp_block_refs(b), 1u);
  Copies c2 = CopiesOf({&dp, &cp});
  EXPECT_EQ(c2.append - c1.append, 3u);
  // At the threshold: referenced.
  bp_slice big{b, 100, static_cast<uint32_t>(T)};
  ASSERT_EQ(bp_chain_append_slice(&c, &big), 0);
  EXPECT_EQ(bp_block_refs(b), 2u) << "a large slice was not referenced";
  EXPECT_EQ(CopiesOf({&dp, &cp}), c2);
  // append_ref always references, even small.
  bp_slice two{b, 500, 2};
  ASSERT_EQ(bp_chain_append_ref(&c, &two), 0);
  EXPECT_EQ(bp_block_refs(b), 3u);
  EXPECT_EQ(CopiesOf({&dp, &cp}), c2);
  EXPECT_EQ(ChainBytes(&c), blk.substr(0, T - 1) + blk.substr(7, 3) + blk.substr(100, T) +
                                blk.substr(500, 2));
  bp_chain_deinit(&c);
  EXPECT_EQ(bp_block_refs(b), 1u);
  bp_block_unref(b);
}

// An empty chain's first write block is small — 1 KiB, or copy_below + 512
// when that is more — so that a loop holding one reply chain per ready
// connection holds 1 KiB blocks, not 4 KiB ones; blocks after the first are
// 4 KiB. Measured by what the pool hands out (bytes_in_use, nodes included).
TEST(ChainWriter, FirstWriteBlockIsSmallLaterOnesAreFull) {
  Pool cp;
  const size_t node = bp_class_size(0);  // a node is a smallest-class block
  for (size_t below : {size_t{0}, size_t{1024}, size_t{8192}}) {
    SCOPED_TRACE("copy_below " + std::to_string(below));
    bp_chain c;
    bp_chain_init(&c, cp);
    bp_chain_set_copy_below(&c, below);
    const size_t in0 = cp.stats().bytes_in_use;
    ASSERT_EQ(bp_chain_append(&c, "reply", 5), 0);
    const size_t first = cp.stats().bytes_in_use - in0 - node;
    const size_t want = below + 512 < 1024 ? 1024 : below + 512 < 4096 ? below + 512 : 4096;
    EXPECT_EQ(first, bptest::ClassSizeFor(want - BP_BLOCK_HDR));
    // Fill it: the next block is a full 4 KiB one.
    std::string fill(first, 'x');
    ASSERT_EQ(bp_chain_append(&c, fill.data(), fill.size()), 0);
    EXPECT_EQ(cp.stats().bytes_in_use - in0, first + 4096 + 2 * node);
    EXPECT_EQ(ChainBytes(&c), "reply" + fill);
    bp_chain_deinit(&c);
  }
}

TEST(ChainWriter, UncommittedBytesAreDiscarded) {
  Pool cp;
  bp_chain c;
  bp_chain_init(&c, cp);
  char *p = static_cast<char *>(bp_chain_reserve(&c, 100));
  ASSERT_NE(p, nullptr);
  std::memset(p, 'G', 100);
  std::memcpy(p, "0123456789", 10);
  bp_chain_commit(&c, 10);
  EXPECT_EQ(bp_chain_len(&c), 10u);
  ASSERT_EQ(bp_chain_append(&c, "xyz", 3), 0);
  EXPECT_EQ(ChainBytes(&c), "0123456789xyz");
  // A reservation that is superseded by another call commits nothing.
  p = static_cast<char *>(bp_chain_reserve(&c, 50));
  ASSERT_NE(p, nullptr);
  std::memset(p, 'G', 50);
  ASSERT_EQ(bp_chain_append(&c, "!", 1), 0);
  EXPECT_EQ(ChainBytes(&c), "0123456789xyz!");
  // reserve more than any class: a huge block.
  const size_t big = BP_MAX_CLASS_SIZE + 1000;
  p = static_cast<char *>(bp_chain_reserve(&c, big));
  ASSERT_NE(p, nullptr);
  std::memset(p, 'H', big);
  bp_chain_commit(&c, big);
  EXPECT_EQ(bp_chain_len(&c), 14 + big);
  EXPECT_EQ(bp_chain_byte(&c, 14 + big - 1), 'H');
  EXPECT_EQ(bp_chain_find(&c, 0, SIZE_MAX, 'H'), 14);
  EXPECT_EQ(bp_chain_reserve(&c, SIZE_MAX / 2), nullptr);
  EXPECT_EQ(bp_chain_len(&c), 14 + big);
  bp_chain_deinit(&c);
}

TEST(ChainWriter, AppendChainMovesWithoutCopyOrRefcountChange) {
  Pool dp, cp;
  bp_chain a, b;
  bp_chain_init(&a, cp);
  bp_chain_init(&b, cp);
  Built ba = BuildAdopted(&a, dp, "hello ", {6});
  Built bb = BuildAdopted(&b, dp, "brave new world", {6, 9});
  Copies c0 = CopiesOf({&dp, &cp});
  bp_chain_append_chain(&a, &b);
  EXPECT_EQ(ChainBytes(&a), "hello brave new world");
  EXPECT_EQ(bp_chain_len(&b), 0u);
  EXPECT_EQ(bp_chain_nslices(&b), 0u);
  EXPECT_EQ(bp_block_refs(bb.blocks[0]), 1u);
  EXPECT_EQ(bp_block_refs(bb.blocks[1]), 1u);
  EXPECT_EQ(CopiesOf({&dp, &cp}), c0);
  std::vector<iovec> segs = Segs(&a);
  ASSERT_EQ(segs.size(), 3u);
  EXPECT_EQ(segs[1].iov_base, bb.ptrs[0]);
  // src is reusable.
  ASSERT_EQ(bp_chain_append(&b, "again", 5), 0);
  EXPECT_EQ(ChainBytes(&b), "again");
  // Appending an empty chain changes nothing.
  bp_chain e;
  bp_chain_init(&e, cp);
  bp_chain_append_chain(&a, &e);
  EXPECT_EQ(ChainBytes(&a), "hello brave new world");
  bp_chain_deinit(&e);
  bp_chain_deinit(&a);
  bp_chain_deinit(&b);
  EXPECT_EQ(dp.stats().blocks_in_use, 0u);
  (void)ba;
}

TEST(ChainReader, EmptyChain) {
  Pool cp;
  bp_chain c, d;
  bp_chain_init(&c, cp);
  bp_chain_init(&d, cp);
  EXPECT_EQ(bp_chain_len(&c), 0u);
  EXPECT_EQ(bp_chain_nslices(&c), 0u);
  iovec iov[4];
  size_t bytes = 99;
  EXPECT_EQ(bp_chain_write_iov(&c, iov, 4, &bytes), 0);
  EXPECT_EQ(bytes, 0u);
  EXPECT_EQ(bp_chain_peek_iov(&c, 0, 0, iov, 4), 0);
  EXPECT_EQ(bp_chain_peek_iov(&c, 0, 1, iov, 4), -EAGAIN);
  char scratch[4];
  EXPECT_EQ(bp_chain_view(&c, 0, 1, scratch), nullptr);
  EXPECT_EQ(bp_chain_copy_out(&c, 0, scratch, 1), -EAGAIN);
  EXPECT_EQ(bp_chain_copy_out(&c, 0, scratch, 0), 0);
  EXPECT_EQ(bp_chain_find(&c, 0, SIZE_MAX, 'a'), -ENOENT);
  EXPECT_EQ(bp_chain_find2(&c, 0, SIZE_MAX, '\r', '\n'), -ENOENT);
  EXPECT_EQ(bp_chain_skip(&c, 0), 0);
  EXPECT_EQ(bp_chain_skip(&c, 1), -EAGAIN);
  EXPECT_EQ(bp_chain_cut(&c, 0, &d), 0);
  EXPECT_EQ(bp_chain_cut(&c, 1, &d), -EAGAIN);
  EXPECT_EQ(bp_chain_len(&d), 0u);
  bp_slice sl{};
  EXPECT_EQ(bp_chain_slice(&c, 0, 1, &sl), -EAGAIN);
  ASSERT_EQ(bp_chain_append(&c, "", 0), 0);
  EXPECT_EQ(bp_chain_len(&c), 0u);
  bp_chain_trim(&c);
  bp_chain_deinit(&c);
  bp_chain_deinit(&c);  // deinit is reset: twice is fine
  bp_chain_deinit(&d);
}

// Huge blocks work in chains like any other.
TEST(ChainWriter, HugeBlocksInChains) {
  Pool dp, cp;
  bp_chain c;
  bp_chain_init(&c, cp);
  std::mt19937_64 rng(9);
  const std::string big = bptest::RandBytes(rng, 600000);
  ASSERT_EQ(bp_chain_append(&c, big.data(), big.size()), 0);
  const std::string huge = bptest::RandBytes(rng, BP_MAX_CLASS_SIZE + 10);
  bp_block *hb = bptest::FilledBlock(dp, huge, 4);
  ASSERT_NE(hb, nullptr);
  ASSERT_EQ(bp_chain_adopt(&c, hb, 4, static_cast<uint32_t>(huge.size())), 0);
  EXPECT_EQ(ChainBytes(&c), big + huge);
  bp_slice sl{};
  ASSERT_EQ(bp_chain_slice(&c, big.size() + 1000, 200000, &sl), 0);
  EXPECT_EQ(bp_slice_ptr(&sl), bp_block_data(hb) + 4 + 1000);
  std::vector<char> scratch(100);
  const char *v = static_cast<const char *>(bp_chain_view(&c, big.size() - 50, 100, scratch.data()));
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(std::string(v, 100), (big + huge).substr(big.size() - 50, 100));
  bp_chain_deinit(&c);
  EXPECT_EQ(std::string(bp_slice_ptr(&sl), sl.len), huge.substr(1000, 200000));
  bp_stats before = dp.stats();
  bp_slice_release(&sl);
  bp_stats after = dp.stats();
  EXPECT_GT(after.sys_free_calls, before.sys_free_calls);
  EXPECT_EQ(after.blocks_in_use, 0u);
}

// A call that fails for lack of memory changes nothing.
TEST(ChainWriter, FailedCallsChangeNothing) {
  Pool cp(256 * 1024);
  bp_chain c;
  bp_chain_init(&c, cp);
  std::string piece(1000, 'p');
  std::string model;
  int rc = 0;
  for (int i = 0; i < 10000; i++) {
    for (auto &ch : piece) ch = static_cast<char>('a' + i % 26);
    rc = bp_chain_append(&c, piece.data(), piece.size());
    if (rc != 0) break;
    model += piece;
  }
  ASSERT_EQ(rc, -ENOMEM);
  EXPECT_GE(cp.stats().enomem, 1u);
  EXPECT_EQ(bp_chain_len(&c), model.size()) << "a failed append changed the chain";
  EXPECT_EQ(ChainBytes(&c), model);
  EXPECT_EQ(bp_chain_reserve(&c, 200000), nullptr);
  EXPECT_EQ(bp_chain_len(&c), model.size());
  EXPECT_LE(cp.stats().charged_bytes, 256u * 1024u);
  // A foreign slice still fits (a node is small), or fails cleanly.
  EXPECT_EQ(ChainBytes(&c), model);
  // Releasing memory lets the writer continue.
  ASSERT_EQ(bp_chain_skip(&c, model.size()), 0);
  bp_chain_trim(&c);
  ASSERT_EQ(bp_chain_append(&c, piece.data(), piece.size()), 0);
  EXPECT_EQ(ChainBytes(&c), piece);
  bp_chain_deinit(&c);
}

// A chain handed to another thread (through a mutex) is read and freed
// there; its blocks return to the pool from that thread.
// Chains of different pools exchange bytes; every node and block goes
// back to the pool it came from.
TEST(ChainPools, MovingBytesBetweenPoolsReturnsEverythingHome) {
  Pool p1, p2;
  bp_chain a, b;
  bp_chain_init(&a, p1);
  bp_chain_init(&b, p2);
  std::mt19937_64 rng(17);
  std::string sa = bptest::RandBytes(rng, 9000), sb = bptest::RandBytes(rng, 7000);
  ASSERT_EQ(bp_chain_append(&a, sa.data(), sa.size()), 0);
  ASSERT_EQ(bp_chain_append(&b, sb.data(), sb.size()), 0);
  ASSERT_EQ(bp_chain_cut(&a, 5000, &b), 0);  // p1's bytes into p2's chain
  std::string mb = sb + sa.substr(0, 5000), ma = sa.substr(5000);
  bp_chain_append_chain(&a, &b);  // p2's nodes into p1's chain
  ma += mb;
  EXPECT_EQ(ChainBytes(&a), ma);
  EXPECT_EQ(bp_chain_len(&b), 0u);
  ASSERT_EQ(bp_chain_append(&a, "tail", 4), 0);
  ma += "tail";
  ASSERT_EQ(bp_chain_append(&b, "again", 5), 0);
  EXPECT_EQ(ChainBytes(&a), ma);
  EXPECT_EQ(ChainBytes(&b), "again");
  EXPECT_GT(p2.stats().blocks_in_use, 0u);
  bp_chain_deinit(&a);
  bp_chain_deinit(&b);
  EXPECT_EQ(p1.stats().blocks_in_use, 0u);
  EXPECT_EQ(p2.stats().blocks_in_use, 0u);
}

TEST(ChainThreads, HandOffToAnotherThread) {
  Pool dp, cp;
  std::mutex m;
  std::condition_variable cv;
  std::deque<std::pair<bp_chain *, std::string>> q;
  bool done = false;
  uint64_t bad = 0, handled = 0;
  std::thread reader([&] {
    bp_chain mine;
    bp_chain_init(&mine, cp);
    for (;;) {
      std::unique_lock<std::mutex> l(m);
      cv.wait(l, [&] { return !q.empty() || done; });
      if (q.empty()) break;
      auto item = q.front();
      q.pop_front();
      l.unlock();
      if (ChainBytes(item.first) != item.second) bad++;
      if (bp_chain_cut(item.first, item.second.size() / 2, &mine) != 0) bad++;
      bp_chain_deinit(item.first);
      delete item.first;
      bp_chain_deinit(&mine);
      handled++;
    }
    bp_chain_deinit(&mine);
  });
  std::mt19937_64 rng(13);
  for (int i = 0; i < 300; i++) {
    bp_chain *c = new bp_chain;
    bp_chain_init(c, cp);
    std::string s = bptest::RandBytes(rng, 1 + rng() % 5000);
    EXPECT_EQ(bp_chain_append(c, s.data(), s.size()), 0);
    std::string t = bptest::RandBytes(rng, 1 + rng() % 5000);
    bp_block *b = bptest::FilledBlock(dp, t);
    EXPECT_EQ(bp_chain_adopt(c, b, 0, static_cast<uint32_t>(t.size())), 0);
    std::lock_guard<std::mutex> l(m);
    q.emplace_back(c, s + t);
    cv.notify_all();
  }
  {
    std::lock_guard<std::mutex> l(m);
    done = true;
    cv.notify_all();
  }
  reader.join();
  EXPECT_EQ(handled, 300u);
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(dp.stats().blocks_in_use, 0u);
  EXPECT_EQ(dp.stats().block_puts, 300u);
}

}  // namespace
