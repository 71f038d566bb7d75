// get-or-load with singleflight (cache/group.c): 100 concurrent misses of
// one key with a slow loader make one load; errors and executor refusals
// reach every waiter exactly once.
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/cache/cache_test_util.h"

namespace {

// An executor that runs each task on a new detached-then-joined thread.
struct ThreadExec {
	std::mutex mu;
	std::vector<std::thread> threads;
	std::atomic<int> submitted{0};
	bool refuse = false;
	static int submit(void *arg, void (*fn)(void *), void *fa)
	{
		auto *e = static_cast<ThreadExec *>(arg);
		if (e->refuse)
			return -EAGAIN;
		e->submitted++;
		std::lock_guard<std::mutex> l(e->mu);
		e->threads.emplace_back(fn, fa);
		return 0;
	}
	void join()
	{
		std::lock_guard<std::mutex> l(mu);
		for (auto &t : threads)
			t.join();
		threads.clear();
	}
};

struct Loader {
	std::atomic<int> calls{0};
	int delay_ms = 0;
	int rc = 0;
	std::string value = "loaded";
	static int load(void *arg, const void *key, size_t klen, struct bp_chain *out,
	                uint32_t *flags, int64_t *exptime)
	{
		auto *l = static_cast<Loader *>(arg);
		l->calls++;
		std::this_thread::sleep_for(std::chrono::milliseconds(l->delay_ms));
		if (l->rc)
			return l->rc;
		std::string v = l->value + ":" + std::string((const char *)key, klen);
		*flags = 77;
		*exptime = 0;
		return bp_chain_append(out, v.data(), v.size());
	}
};

// One caller's outcome, filled by the done callback or the hit path.
struct Result {
	std::mutex mu;
	std::condition_variable cv;
	bool done = false;
	int rc = 1;
	std::string val;
	uint32_t flags = 0;
	int calls = 0;
	static void on_done(void *arg, int rc, struct cache_value *v)
	{
		auto *r = static_cast<Result *>(arg);
		std::lock_guard<std::mutex> l(r->mu);
		r->calls++;
		r->rc = rc;
		if (v) {
			r->val = slice_str(v->data);
			r->flags = v->flags;
			cache_value_release(v);
		}
		r->done = true;
		r->cv.notify_all();
	}
	void wait()
	{
		std::unique_lock<std::mutex> l(mu);
		cv.wait(l, [&] { return done; });
	}
};

class GroupTest : public ::testing::Test {
protected:
	struct cache *c = nullptr;
	ThreadExec exec;
	struct cache_executor ex = {ThreadExec::submit, &exec};
	Loader loader;
	struct cache_loader ld = {Loader::load, &loader, &ex};
	void SetUp() override
	{
		struct cache_opts o = {};
		o.limit = 4u << 20;
		o.seg_size = 64 * 1024;
		o.nshards = 2;
		c = cache_create(&o);
		ASSERT_NE(c, nullptr);
	}
	void TearDown() override
	{
		exec.join();
		cache_destroy(&c);
	}
	int call(const std::string &k, Result *r)
	{
		struct cache_value v;
		int rc = cache_get_or_load(c, k.data(), k.size(), &ld, Result::on_done, r, &v);
		if (rc == 0) {
			std::lock_guard<std::mutex> l(r->mu);
			r->rc = 0;
			r->val = slice_str(v.data);
			r->flags = v.flags;
			r->done = true;
			cache_value_release(&v);
		}
		return rc;
	}
};

TEST_F(GroupTest, HundredConcurrentMissesLoadOnce)
{
	loader.delay_ms = 200;
	const int n = 100;
	std::vector<Result> res(n);
	std::vector<std::thread> callers;
	std::atomic<int> go{0};
	for (int i = 0; i < n; i++)
		callers.emplace_back([&, i] {
			while (!go.load())
				std::this_thread::yield();
			int rc = call("hot", &res[i]);
			EXPECT_TRUE(rc == 0 || rc == -EINPROGRESS) << rc;
		});
	go = 1;
	for (auto &t : callers)
		t.join();
	for (auto &r : res) {
		r.wait();
		EXPECT_EQ(r.rc, 0);
		EXPECT_EQ(r.val, "loaded:hot");
		EXPECT_EQ(r.flags, 77u);
		EXPECT_LE(r.calls, 1);
	}
	exec.join();
	EXPECT_EQ(loader.calls.load(), 1);
	struct cache_stats s = stats(c);
	EXPECT_EQ(s.loads, 1u);
	EXPECT_GE(s.load_joins, 1u);
	EXPECT_LE(s.load_joins, uint64_t(n - 1));
	// Now it is cached: a hit, no load, no callback.
	Result hit;
	EXPECT_EQ(call("hot", &hit), 0);
	EXPECT_EQ(hit.val, "loaded:hot");
	EXPECT_EQ(hit.calls, 0);
	EXPECT_EQ(loader.calls.load(), 1);
}

TEST_F(GroupTest, DifferentKeysLoadSeparately)
{
	loader.delay_ms = 20;
	Result a, b;
	EXPECT_EQ(call("a", &a), -EINPROGRESS);
	EXPECT_EQ(call("b", &b), -EINPROGRESS);
	a.wait();
	b.wait();
	EXPECT_EQ(a.val, "loaded:a");
	EXPECT_EQ(b.val, "loaded:b");
	EXPECT_EQ(loader.calls.load(), 2);
}

TEST_F(GroupTest, LoaderErrorReachesEveryWaiter)
{
	loader.delay_ms = 100;
	loader.rc = -EIO;
	const int n = 10;
	std::vector<Result> res(n);
	std::vector<std::thread> callers;
	for (int i = 0; i < n; i++)
		callers.emplace_back([&, i] { EXPECT_EQ(call("bad", &res[i]), -EINPROGRESS); });
	for (auto &t : callers)
		t.join();
	for (auto &r : res) {
		r.wait();
		EXPECT_EQ(r.rc, -EIO);
		EXPECT_EQ(r.calls, 1);
	}
	exec.join();
	EXPECT_EQ(get(c, "bad").rc, -ENOENT);
	EXPECT_LE(loader.calls.load(), n);
}

TEST_F(GroupTest, RefusalIsReturnedNotCalledBack)
{
	exec.refuse = true;
	Result r;
	EXPECT_EQ(call("k", &r), -EAGAIN);
	EXPECT_EQ(r.calls, 0);
	EXPECT_EQ(loader.calls.load(), 0);
	exec.refuse = false;
	EXPECT_EQ(call("k", &r), -EINPROGRESS);
	r.wait();
	EXPECT_EQ(r.val, "loaded:k");
	struct cache_value v;
	EXPECT_EQ(cache_get_or_load(c, "", 0, &ld, Result::on_done, &r, &v), -EINVAL);
}

} // namespace
