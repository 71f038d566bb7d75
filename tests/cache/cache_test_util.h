// Helpers shared by the cache suites: a fake clock and std::string
// wrappers around the store's calls.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>

#include "cache/cache.h"

struct FakeClock {
	std::atomic<int64_t> now{1700000000};
	static int64_t read(void *arg)
	{
		return static_cast<FakeClock *>(arg)->now.load();
	}
};

struct Got {
	int rc = 0;
	std::string val;
	uint32_t flags = 0;
	uint32_t exptime = 0;
	uint64_t cas = 0;
};

inline std::string slice_str(const struct bp_slice &s)
{
	return std::string(bp_slice_ptr(&s), s.len);
}

inline Got get(struct cache *c, const std::string &k)
{
	Got g;
	struct cache_value v;
	g.rc = cache_get(c, k.data(), k.size(), &v);
	if (g.rc == 0) {
		g.val = slice_str(v.data);
		g.flags = v.flags;
		g.exptime = v.exptime;
		g.cas = v.cas;
		cache_value_release(&v);
	}
	return g;
}

inline int set(struct cache *c, const std::string &k, const std::string &v,
               uint32_t flags = 0, int64_t exp = 0)
{
	return cache_set(c, k.data(), k.size(), v.data(), v.size(), flags, exp);
}

inline int store(struct cache *c, enum cache_mode m, const std::string &k,
                 const std::string &v, uint64_t cas = 0, uint64_t *cas_out = nullptr,
                 uint32_t flags = 0, int64_t exp = 0)
{
	struct iovec iov = {const_cast<char *>(v.data()), v.size()};
	return cache_storev(c, m, k.data(), k.size(), &iov, 1, flags, exp, cas, cas_out);
}

inline struct cache_stats stats(struct cache *c)
{
	struct cache_stats s;
	cache_stats_get(c, &s);
	return s;
}

inline struct bp_stats pstats(struct cache *c)
{
	struct bp_stats s;
	bp_pool_stats(cache_pool(c), &s);
	return s;
}
