// The worker pool (netpoll/workers.c): every task runs exactly once, the
// two queue-full policies, completions posted back to a loop's thread, the
// drain on destroy, -ESHUTDOWN once destroy has begun, and the counters.
//
// Ordering is made with latches (a blocker task holds the only worker while
// the test fills the queue), never with sleeps; the one sleep below is the
// delay whose length the wait-time counter must report.
#include "netpoll/netpoll.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

// Long enough never to fire on a healthy run (even under TSan); it only
// keeps a broken run from hanging.
constexpr auto kTimeout = 5s;

// A one-shot gate.
class Latch {
public:
	void open()
	{
		std::lock_guard<std::mutex> g(m_);
		open_ = true;
		cv_.notify_all();
	}
	bool wait()
	{
		std::unique_lock<std::mutex> g(m_);
		return cv_.wait_for(g, kTimeout, [&] { return open_; });
	}

private:
	std::mutex m_;
	std::condition_variable cv_;
	bool open_ = false;
};

// A counter that can be waited on.
class Count {
public:
	void add()
	{
		std::lock_guard<std::mutex> g(m_);
		n_++;
		cv_.notify_all();
	}
	bool wait_for(int n)
	{
		std::unique_lock<std::mutex> g(m_);
		return cv_.wait_for(g, kTimeout, [&] { return n_ >= n; });
	}
	int get()
	{
		std::lock_guard<std::mutex> g(m_);
		return n_;
	}

private:
	std::mutex m_;
	std::condition_variable cv_;
	int n_ = 0;
};

// Holds a worker until released; `started` opens once it runs.
struct Blocker {
	Latch started, release;
};

void block_fn(void *a)
{
	auto *b = static_cast<Blocker *>(a);
	b->started.open();
	b->release.wait();
}

// Completions: counted, and checked to run on the loop's thread.
struct Dones {
	std::thread::id loop_tid;
	Count n;
	std::atomic<int> off_loop{0};
};

void done_fn(void *a)
{
	auto *d = static_cast<Dones *>(a);
	if (std::this_thread::get_id() != d->loop_tid)
		d->off_loop++;
	d->n.add();
}

// A task that records where it ran.
struct Rec {
	std::atomic<int> runs{0};
	std::thread::id ran_on;
};

void rec_fn(void *a)
{
	auto *r = static_cast<Rec *>(a);
	r->ran_on = std::this_thread::get_id();
	r->runs++;
}

void count_fn(void *a)
{
	static_cast<std::atomic<int> *>(a)->fetch_add(1);
}

ssize_t noop_data(np_conn *, bp_chain *)
{
	return 0;
}

np_workers_stats stats_of(np_workers *w)
{
	np_workers_stats s;
	np_workers_get_stats(w, &s);
	return s;
}

// A running group of one loop, to post completions to, and the pool under
// test (destroyed before the group: the pool posts into the group).
//
// The loop runs epoll: the pool reaches a loop only through np_loop_post,
// which loop_test covers on every backend, and stopping an io_uring loop
// can take up to 2 s here (its deinit sometimes waits out its bound on the
// wake read), which would dominate this suite. GEECACHE_BACKEND still
// overrides.
class WorkersTest : public ::testing::Test {
protected:
	void SetUp() override
	{
		np_opts o{};
		o.nloops = 1;
		o.backend = NP_BACKEND_EPOLL;
		static const np_handler h = {nullptr, noop_data, nullptr};
		g_ = np_group_create(&o, &h);
		ASSERT_NE(g_, nullptr) << errno;
		ASSERT_EQ(np_group_start(g_), 0);
		loop_ = np_group_loop(g_, 0);
		struct Tid {
			std::thread::id tid;
			Latch got;
		} t;
		ASSERT_EQ(np_loop_post(loop_, [](void *a) {
			auto *p = static_cast<Tid *>(a);
			p->tid = std::this_thread::get_id();
			p->got.open();
		}, &t), 0);
		ASSERT_TRUE(t.got.wait());
		dones_.loop_tid = t.tid;
	}

	void TearDown() override
	{
		np_workers_destroy(&w_);
		np_group_destroy(&g_);
	}

	void make(int nthreads, uint32_t queue_cap)
	{
		np_workers_opts o{};
		o.nthreads = nthreads;
		o.queue_cap = queue_cap;
		w_ = np_workers_create(&o);
		ASSERT_NE(w_, nullptr) << errno;
	}

	// Returns once everything posted to the loop before it has run (posts
	// run in order).
	void loop_barrier()
	{
		Latch l;
		ASSERT_EQ(np_loop_post(loop_, [](void *a) {
			static_cast<Latch *>(a)->open();
		}, &l), 0);
		ASSERT_TRUE(l.wait());
	}

	// Submits and waits until b holds a worker.
	void block_one(Blocker *b)
	{
		ASSERT_EQ(np_workers_submit(w_, block_fn, b, NP_SUBMIT_REFUSE,
		                            nullptr, nullptr, nullptr), 0);
		ASSERT_TRUE(b->started.wait());
	}

	np_group *g_ = nullptr;
	np_loop *loop_ = nullptr;
	np_workers *w_ = nullptr;
	Dones dones_;
};

// 10,000 tasks from two threads through a small queue (so some run inline):
// each runs exactly once, each completion runs once on the loop thread, and
// when the last completion has run the gauges are back to 0.
TEST_F(WorkersTest, EveryTaskRunsOnce)
{
	constexpr int kTasks = 10000;
	make(0, 64);
	struct Task {
		std::atomic<int> hits{0};
		Dones *d;
	};
	std::vector<Task> tasks(kTasks);
	for (auto &t : tasks)
		t.d = &dones_;
	auto fn = [](void *a) { static_cast<Task *>(a)->hits++; };
	auto done = [](void *a) { done_fn(static_cast<Task *>(a)->d); };

	std::atomic<int> failed{0};
	auto submitter = [&](int from, int to) {
		for (int i = from; i < to; i++)
			if (np_workers_submit(w_, fn, &tasks[i], NP_SUBMIT_RUN_INLINE,
			                      loop_, done, &tasks[i]) != 0)
				failed++;
	};
	std::thread a(submitter, 0, kTasks / 2);
	std::thread b(submitter, kTasks / 2, kTasks);
	a.join();
	b.join();
	EXPECT_EQ(failed.load(), 0);

	ASSERT_TRUE(dones_.n.wait_for(kTasks));
	EXPECT_EQ(dones_.off_loop.load(), 0);
	for (int i = 0; i < kTasks; i++)
		ASSERT_EQ(tasks[i].hits.load(), 1) << "task " << i;
	np_workers_stats s = stats_of(w_);
	EXPECT_EQ(s.completed + s.ran_inline, uint64_t(kTasks));
	EXPECT_GT(s.completed, 0u);
	EXPECT_EQ(s.refused, 0u);
	EXPECT_EQ(s.queued, 0u);
	EXPECT_EQ(s.running, 0u);
	EXPECT_GE(s.wait_ns_total, s.wait_ns_max);

	np_workers_destroy(&w_);
	EXPECT_EQ(w_, nullptr);
	loop_barrier();
	EXPECT_EQ(dones_.n.get(), kTasks); // nothing posted twice
}

// Queue full, RUN_INLINE: the task runs in the submitter before submit
// returns, counted as ran_inline, and its completion still goes to the loop.
TEST_F(WorkersTest, RunInlineWhenFull)
{
	make(1, 4);
	Blocker blk;
	block_one(&blk);
	Rec queued[4];
	for (auto &r : queued)
		ASSERT_EQ(np_workers_submit(w_, rec_fn, &r, NP_SUBMIT_RUN_INLINE,
		                            loop_, done_fn, &dones_), 0);
	np_workers_stats s = stats_of(w_);
	EXPECT_EQ(s.queued, 4u);
	EXPECT_EQ(s.running, 1u);
	EXPECT_EQ(s.ran_inline, 0u);

	Rec in;
	ASSERT_EQ(np_workers_submit(w_, rec_fn, &in, NP_SUBMIT_RUN_INLINE,
	                            loop_, done_fn, &dones_), 0);
	EXPECT_EQ(in.runs.load(), 1);
	EXPECT_EQ(in.ran_on, std::this_thread::get_id());
	s = stats_of(w_);
	EXPECT_EQ(s.ran_inline, 1u);
	EXPECT_EQ(s.queued, 4u);
	EXPECT_EQ(s.completed, 0u);
	for (auto &r : queued)
		EXPECT_EQ(r.runs.load(), 0);

	// The inline task's completion arrives while the worker is still held.
	ASSERT_TRUE(dones_.n.wait_for(1));
	EXPECT_EQ(dones_.n.get(), 1);
	EXPECT_EQ(dones_.off_loop.load(), 0);

	blk.release.open();
	ASSERT_TRUE(dones_.n.wait_for(5));
	EXPECT_EQ(dones_.off_loop.load(), 0);
	for (auto &r : queued) {
		EXPECT_EQ(r.runs.load(), 1);
		EXPECT_NE(r.ran_on, std::this_thread::get_id());
	}
	s = stats_of(w_);
	EXPECT_EQ(s.completed, 5u); // the blocker and the four queued
	EXPECT_EQ(s.ran_inline, 1u);
	EXPECT_EQ(s.queued, 0u);
	EXPECT_EQ(s.running, 0u);
}

// Queue full, REFUSE: -EAGAIN, the task does not run and its completion is
// never posted; the refusal is counted.
TEST_F(WorkersTest, RefuseWhenFull)
{
	make(1, 2);
	Blocker blk;
	block_one(&blk);
	Rec queued[2];
	for (auto &r : queued)
		ASSERT_EQ(np_workers_submit(w_, rec_fn, &r, NP_SUBMIT_REFUSE,
		                            loop_, done_fn, &dones_), 0);

	Rec refused;
	Dones refused_dones;
	refused_dones.loop_tid = dones_.loop_tid;
	EXPECT_EQ(np_workers_submit(w_, rec_fn, &refused, NP_SUBMIT_REFUSE,
	                            loop_, done_fn, &refused_dones), -EAGAIN);
	EXPECT_EQ(refused.runs.load(), 0);
	np_workers_stats s = stats_of(w_);
	EXPECT_EQ(s.refused, 1u);
	EXPECT_EQ(s.ran_inline, 0u);
	EXPECT_EQ(s.queued, 2u);

	blk.release.open();
	ASSERT_TRUE(dones_.n.wait_for(2));
	np_workers_destroy(&w_);
	loop_barrier();
	EXPECT_EQ(refused.runs.load(), 0);
	EXPECT_EQ(refused_dones.n.get(), 0);
	EXPECT_EQ(dones_.n.get(), 2);
	for (auto &r : queued)
		EXPECT_EQ(r.runs.load(), 1);
}

// Destroy begun while every worker is held: submits get -ESHUTDOWN (the pool
// is still alive, destroy being stuck in the join), nothing queued has run;
// once released, destroy runs every queued task before it returns.
TEST_F(WorkersTest, DestroyDrainsAndRefusesNewWork)
{
	make(2, 64);
	Blocker blk[2];
	block_one(&blk[0]);
	block_one(&blk[1]);
	std::atomic<int> ran{0};
	int queued = 0;
	for (; queued < 50; queued++)
		ASSERT_EQ(np_workers_submit(w_, count_fn, &ran, NP_SUBMIT_REFUSE,
		                            nullptr, nullptr, nullptr), 0);

	np_workers *w = w_; // the helper owns w_ from here on
	std::thread destroyer([this] { np_workers_destroy(&w_); });
	// Until destroy marks the pool, submits still queue (or are refused
	// once full); wait for the first -ESHUTDOWN.
	int r = 0;
	auto deadline = std::chrono::steady_clock::now() + kTimeout;
	while (std::chrono::steady_clock::now() < deadline) {
		r = np_workers_submit(w, count_fn, &ran, NP_SUBMIT_REFUSE,
		                      nullptr, nullptr, nullptr);
		if (r == 0)
			queued++;
		else if (r != -EAGAIN)
			break;
		std::this_thread::sleep_for(100us); // let the destroyer run
	}
	EXPECT_EQ(r, -ESHUTDOWN);
	Rec inl;
	EXPECT_EQ(np_workers_submit(w, rec_fn, &inl, NP_SUBMIT_RUN_INLINE,
	                            nullptr, nullptr, nullptr), -ESHUTDOWN);
	EXPECT_EQ(inl.runs.load(), 0); // shut down beats run-inline
	np_workers_stats s = stats_of(w);
	EXPECT_EQ(ran.load(), 0);
	EXPECT_EQ(s.queued, uint64_t(queued));
	EXPECT_EQ(s.running, 2u);

	blk[0].release.open();
	blk[1].release.open();
	destroyer.join();
	EXPECT_EQ(w_, nullptr);
	EXPECT_EQ(ran.load(), queued);
}

// A task that runs during the drain (and one still running when destroy
// begins) may call submit: it gets -ESHUTDOWN, and the drain ends.
TEST_F(WorkersTest, SubmitFromTaskDuringDestroy)
{
	make(1, 8);
	struct Ctx {
		np_workers *w;
		Latch release;
		std::atomic<int> first_r{1}, queued_r{1};
		std::atomic<int> ran{0}; // what the tasks' own submits ran
	} ctx;
	ctx.w = w_;
	Latch started;
	struct Arg {
		Ctx *c;
		Latch *started;
	} first{&ctx, &started}, later{&ctx, nullptr};
	auto fn = [](void *a) {
		auto *p = static_cast<Arg *>(a);
		if (p->started) { // the first: holds the worker
			p->started->open();
			p->c->release.wait();
		}
		int r = np_workers_submit(p->c->w, count_fn, &p->c->ran,
		                          NP_SUBMIT_RUN_INLINE, nullptr, nullptr,
		                          nullptr);
		(p->started ? p->c->first_r : p->c->queued_r) = r;
	};
	ASSERT_EQ(np_workers_submit(w_, fn, &first, NP_SUBMIT_REFUSE, nullptr,
	                            nullptr, nullptr), 0);
	ASSERT_TRUE(started.wait());
	ASSERT_EQ(np_workers_submit(w_, fn, &later, NP_SUBMIT_REFUSE, nullptr,
	                            nullptr, nullptr), 0);

	std::thread destroyer([this] { np_workers_destroy(&w_); });
	std::atomic<int> main_ran{0};
	int main_queued = 0, r = 0;
	auto deadline = std::chrono::steady_clock::now() + kTimeout;
	while (std::chrono::steady_clock::now() < deadline) {
		r = np_workers_submit(ctx.w, count_fn, &main_ran, NP_SUBMIT_REFUSE,
		                      nullptr, nullptr, nullptr);
		if (r == 0)
			main_queued++;
		else if (r != -EAGAIN)
			break;
		std::this_thread::sleep_for(100us); // let the destroyer run
	}
	EXPECT_EQ(r, -ESHUTDOWN);
	ctx.release.open();
	destroyer.join();
	EXPECT_EQ(ctx.first_r.load(), -ESHUTDOWN);
	EXPECT_EQ(ctx.queued_r.load(), -ESHUTDOWN); // it ran, in the drain
	EXPECT_EQ(ctx.ran.load(), 0); // nothing the tasks submitted ran
	EXPECT_EQ(main_ran.load(), main_queued); // drained too
}

// Queue wait: a task held behind a busy worker for at least kDelay reports
// at least that much; gauges go back to 0 once the work is done.
TEST_F(WorkersTest, StatsCountWaitAndGauges)
{
	constexpr auto kDelay = 30ms;
	make(1, 16);
	Blocker blk;
	block_one(&blk);
	Rec r;
	ASSERT_EQ(np_workers_submit(w_, rec_fn, &r, NP_SUBMIT_REFUSE, loop_,
	                            done_fn, &dones_), 0);
	np_workers_stats s = stats_of(w_);
	EXPECT_EQ(s.queued, 1u);
	EXPECT_EQ(s.running, 1u);
	EXPECT_EQ(s.completed, 0u);

	std::this_thread::sleep_for(kDelay); // the measured delay itself
	blk.release.open();
	ASSERT_TRUE(dones_.n.wait_for(1));
	s = stats_of(w_);
	EXPECT_EQ(s.completed, 2u);
	EXPECT_EQ(s.queued, 0u);
	EXPECT_EQ(s.running, 0u);
	EXPECT_EQ(s.refused, 0u);
	EXPECT_EQ(s.ran_inline, 0u);
	EXPECT_GE(s.wait_ns_max,
	          uint64_t(std::chrono::nanoseconds(kDelay).count()));
	EXPECT_GE(s.wait_ns_total, s.wait_ns_max);
}

// A loop that has stopped cannot take the completion: the task still runs,
// its done is dropped (np_loop_post said -ESHUTDOWN), nothing crashes.
TEST_F(WorkersTest, CompletionDroppedWhenLoopStopped)
{
	make(1, 4);
	np_group_stop(g_, 0);
	Rec r;
	ASSERT_EQ(np_workers_submit(w_, rec_fn, &r, NP_SUBMIT_REFUSE, loop_,
	                            done_fn, &dones_), 0);
	np_workers_destroy(&w_);
	EXPECT_EQ(r.runs.load(), 1);
	EXPECT_EQ(dones_.n.get(), 0);
}

TEST_F(WorkersTest, BadArgumentsAndDefaults)
{
	np_workers_opts bad{};
	bad.nthreads = -1;
	errno = 0;
	EXPECT_EQ(np_workers_create(&bad), nullptr);
	EXPECT_EQ(errno, EINVAL);

	w_ = np_workers_create(nullptr); // CPUs threads, 1024 slots
	ASSERT_NE(w_, nullptr);
	Rec r;
	EXPECT_EQ(np_workers_submit(w_, nullptr, &r, NP_SUBMIT_REFUSE, nullptr,
	                            nullptr, nullptr), -EINVAL);
	EXPECT_EQ(np_workers_submit(w_, rec_fn, &r, NP_SUBMIT_REFUSE, loop_,
	                            nullptr, nullptr), -EINVAL);
	EXPECT_EQ(np_workers_submit(w_, rec_fn, &r, NP_SUBMIT_REFUSE, nullptr,
	                            done_fn, &dones_), -EINVAL);
	np_workers_stats s = stats_of(w_);
	EXPECT_EQ(s.completed + s.refused + s.ran_inline + s.queued, 0u);
	np_workers_destroy(&w_);
	EXPECT_EQ(r.runs.load(), 0);

	np_workers_destroy(nullptr);
	np_workers_destroy(&w_); // *w == NULL
}

} // namespace
