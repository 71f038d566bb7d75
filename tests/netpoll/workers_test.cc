// The worker pool (netpoll/workers.c): every task runs exactly once, the
// two queue-full policies, completions posted back to a loop's thread, the
// drain on destroy, -ESHUTDOWN once destroy has begun, and the counters;
// then the lanes and their share rule, deadlines, the adaptive thread
// count and the per-lane stats.
//
// Ordering is made with latches (a blocker task holds the only worker while
// the test fills the queue), never with sleeps. Time-driven rules (queue
// wait, deadlines, growth, idle retirement) run on an injected clock the
// test advances; the few real sleeps are lower bounds (a delay the counters
// must report at least, or a wait that must pass a bound), never upper ones.
#include "netpoll/netpoll.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
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
		static const np_handler h = {nullptr, noop_data, nullptr, nullptr};
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

// ---- lanes, deadlines, adaptive threads, per-lane stats ---------------

// A clock the test moves by hand (the pool's opts.clock).
struct FakeClock {
	std::atomic<uint64_t> ns{1000000};
	static uint64_t read(void *a)
	{
		return static_cast<FakeClock *>(a)->ns.load();
	}
	void advance(uint64_t d) { ns += d; }
};

// Tasks that log their name, in the order the (single) worker ran them.
struct Order {
	std::mutex m;
	std::string seq;
	Count n;
};

struct Tagged {
	Order *o;
	char tag;
};

void tagged_fn(void *a)
{
	auto *t = static_cast<Tagged *>(a);
	{
		std::lock_guard<std::mutex> g(t->o->m);
		t->o->seq += t->tag;
	}
	t->o->n.add();
}

// What a done of np_workers_submit_opts saw.
struct Status {
	std::atomic<int> calls{0}, status{1};
	std::thread::id on;
	Count n;
};

void status_done(void *a, int st)
{
	auto *s = static_cast<Status *>(a);
	s->on = std::this_thread::get_id();
	s->status = st;
	s->calls++;
	s->n.add();
}

class WorkersLaneTest : public WorkersTest {
protected:
	void make_opts(np_workers_opts o)
	{
		w_ = np_workers_create(&o);
		ASSERT_NE(w_, nullptr) << errno;
	}

	int submit(void (*fn)(void *), void *arg, np_lane lane,
	           np_submit_policy pol = NP_SUBMIT_REFUSE)
	{
		np_task_opts t{};
		t.lane = lane;
		t.policy = pol;
		return np_workers_submit_opts(w_, fn, arg, &t);
	}

	// Submits a blocker in the normal lane and waits until it holds a
	// worker.
	void block_one_opts(Blocker *b)
	{
		ASSERT_EQ(submit(block_fn, b, NP_LANE_NORMAL), 0);
		ASSERT_TRUE(b->started.wait());
	}

	// Polls until pred(stats) or kTimeout; true when it held.
	template <class P> bool poll(P pred)
	{
		auto deadline = std::chrono::steady_clock::now() + kTimeout;
		while (std::chrono::steady_clock::now() < deadline) {
			if (pred(stats_of(w_)))
				return true;
			std::this_thread::sleep_for(1ms);
		}
		return pred(stats_of(w_));
	}

	FakeClock clk_;
};

// With a large share, the worker serves high, then normal, then low,
// whatever order they were queued in; FIFO within a lane.
TEST_F(WorkersLaneTest, HigherLaneFirstFifoWithin)
{
	np_workers_opts o{};
	o.nthreads = 1;
	o.lane_share = 100;
	make_opts(o);
	Blocker blk;
	block_one_opts(&blk);
	Order ord;
	Tagged l1{&ord, 'l'}, n1{&ord, 'n'}, h1{&ord, 'h'}, l2{&ord, 'L'},
		n2{&ord, 'N'}, h2{&ord, 'H'};
	ASSERT_EQ(submit(tagged_fn, &l1, NP_LANE_LOW), 0);
	ASSERT_EQ(submit(tagged_fn, &n1, NP_LANE_NORMAL), 0);
	ASSERT_EQ(submit(tagged_fn, &h1, NP_LANE_HIGH), 0);
	ASSERT_EQ(submit(tagged_fn, &l2, NP_LANE_LOW), 0);
	ASSERT_EQ(submit(tagged_fn, &n2, NP_LANE_NORMAL), 0);
	ASSERT_EQ(submit(tagged_fn, &h2, NP_LANE_HIGH), 0);
	np_workers_stats s = stats_of(w_);
	EXPECT_EQ(s.lanes[NP_LANE_HIGH].queued, 2u);
	EXPECT_EQ(s.lanes[NP_LANE_NORMAL].queued, 2u);
	EXPECT_EQ(s.lanes[NP_LANE_LOW].queued, 2u);
	EXPECT_EQ(s.lanes[NP_LANE_NORMAL].running, 1u); // the blocker
	EXPECT_EQ(s.queued, 6u);
	blk.release.open();
	ASSERT_TRUE(ord.n.wait_for(6));
	EXPECT_EQ(ord.seq, "hHnNlL");
}

// A flood of high tasks (the high lane kept full by another thread) does
// not stop the low lane: with share 4, low tasks run at every fifth dequeue
// exactly, the bound netpoll.h promises (lane_share + 1).
TEST_F(WorkersLaneTest, LowLaneRunsUnderHighFlood)
{
	constexpr int kShare = 4, kLow = 5;
	constexpr uint32_t kCap = 64;
	np_workers_opts o{};
	o.nthreads = 1;
	o.queue_cap = kCap;
	o.lane_share = kShare;
	make_opts(o);
	Blocker blk;
	block_one_opts(&blk);

	Order ord;
	Tagged high{&ord, 'h'}, low{&ord, 'l'};
	std::atomic<bool> stop{false};
	std::atomic<int> flooded{0};
	std::thread flood([&] {
		while (!stop) {
			if (submit(tagged_fn, &high, NP_LANE_HIGH) == 0)
				flooded++;
			else
				std::this_thread::yield(); // full: -EAGAIN
		}
	});
	// Full (the flood has been refused), and it stays full: the worker is
	// held.
	ASSERT_TRUE(poll([&](const np_workers_stats &s) {
		return s.lanes[NP_LANE_HIGH].refused > 0;
	}));
	ASSERT_EQ(stats_of(w_).lanes[NP_LANE_HIGH].queued, kCap);
	for (int i = 0; i < kLow; i++)
		ASSERT_EQ(submit(tagged_fn, &low, NP_LANE_LOW), 0);
	blk.release.open();

	// The last low runs within kLow * (kShare + 1) dequeues.
	ASSERT_TRUE(ord.n.wait_for(kLow * (kShare + 1)));
	stop = true;
	flood.join();
	std::string seq;
	{
		std::lock_guard<std::mutex> g(ord.m);
		seq = ord.seq.substr(0, kLow * (kShare + 1));
	}
	// The high lane never empties in that window (it held kCap), so the
	// order is exact: four highs, one low, ...
	EXPECT_EQ(seq, "hhhhlhhhhlhhhhlhhhhlhhhhl");
	EXPECT_GE(flooded.load(), int(kCap));
	// Counted once fn has returned, a moment after it logged.
	EXPECT_TRUE(poll([](const np_workers_stats &st) {
		return st.lanes[NP_LANE_LOW].completed == uint64_t(kLow);
	}));
	np_workers_destroy(&w_); // the rest of the flood runs while ord lives
}

// All three lanes backlogged, share 2: the normal lane is served too, at
// most lane_share + 2 dequeues apart (a low may come first when both are
// due), and the low lane at most lane_share + 1 apart.
TEST_F(WorkersLaneTest, NormalLaneServedBetweenHighAndLow)
{
	np_workers_opts o{};
	o.nthreads = 1;
	o.lane_share = 2;
	make_opts(o);
	Blocker blk;
	block_one_opts(&blk);
	Order ord;
	Tagged h{&ord, 'h'}, n{&ord, 'n'}, l{&ord, 'l'};
	for (int i = 0; i < 8; i++)
		ASSERT_EQ(submit(tagged_fn, &h, NP_LANE_HIGH), 0);
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(submit(tagged_fn, &n, NP_LANE_NORMAL), 0);
		ASSERT_EQ(submit(tagged_fn, &l, NP_LANE_LOW), 0);
	}
	blk.release.open();
	ASSERT_TRUE(ord.n.wait_for(12));
	EXPECT_EQ(ord.seq, "hhlnhlhnhhhh");
}

// A task still queued at its deadline is not run; its done gets
// -ETIMEDOUT on the worker and it is counted expired. A task whose deadline
// has not passed runs (done gets 0). Relative and absolute deadlines alike.
TEST_F(WorkersLaneTest, DeadlinePassedInQueueExpires)
{
	np_workers_opts o{};
	o.nthreads = 1;
	o.clock = FakeClock::read;
	o.clock_arg = &clk_;
	make_opts(o);
	EXPECT_EQ(np_workers_now(w_), clk_.ns.load());
	Blocker blk;
	block_one_opts(&blk);

	Rec late_rel, late_abs, in_time;
	Status st_rel, st_abs, st_ok;
	np_task_opts t{};
	t.policy = NP_SUBMIT_REFUSE;
	t.lane = NP_LANE_HIGH;
	t.timeout_ns = 1000;
	t.done = status_done;
	t.done_arg = &st_rel;
	ASSERT_EQ(np_workers_submit_opts(w_, rec_fn, &late_rel, &t), 0);
	t.timeout_ns = 0;
	t.deadline_ns = np_workers_now(w_) + 1500;
	t.done_arg = &st_abs;
	ASSERT_EQ(np_workers_submit_opts(w_, rec_fn, &late_abs, &t), 0);
	t.lane = NP_LANE_LOW;
	t.deadline_ns = np_workers_now(w_) + 1000000;
	t.timeout_ns = 5000000; // the earlier of the two counts
	t.done_arg = &st_ok;
	ASSERT_EQ(np_workers_submit_opts(w_, rec_fn, &in_time, &t), 0);

	clk_.advance(2000); // past the first two, not the third
	blk.release.open();
	ASSERT_TRUE(st_rel.n.wait_for(1));
	ASSERT_TRUE(st_abs.n.wait_for(1));
	ASSERT_TRUE(st_ok.n.wait_for(1));
	EXPECT_EQ(st_rel.status.load(), -ETIMEDOUT);
	EXPECT_EQ(st_abs.status.load(), -ETIMEDOUT);
	EXPECT_EQ(st_ok.status.load(), 0);
	EXPECT_EQ(late_rel.runs.load(), 0);
	EXPECT_EQ(late_abs.runs.load(), 0);
	EXPECT_EQ(in_time.runs.load(), 1);
	EXPECT_NE(st_rel.on, std::this_thread::get_id()); // on the worker
	EXPECT_EQ(st_ok.on, in_time.ran_on);

	np_workers_stats s = stats_of(w_);
	EXPECT_EQ(s.lanes[NP_LANE_HIGH].expired, 2u);
	EXPECT_EQ(s.lanes[NP_LANE_HIGH].completed, 0u);
	EXPECT_EQ(s.lanes[NP_LANE_LOW].expired, 0u);
	EXPECT_EQ(s.lanes[NP_LANE_LOW].completed, 1u);
	EXPECT_EQ(s.expired, 2u);
	EXPECT_EQ(s.completed, 2u); // with the blocker
	EXPECT_EQ(st_rel.calls.load() + st_abs.calls.load() + st_ok.calls.load(),
	          3);
}

// Queue full with RUN_INLINE: a task past its deadline expires in the
// submitter (done gets -ETIMEDOUT before submit returns, fn never runs); one
// in time runs inline and its done gets 0, both on the submitting thread.
TEST_F(WorkersLaneTest, RunInlineKeptAndChecksDeadline)
{
	np_workers_opts o{};
	o.nthreads = 1;
	o.queue_cap = 1;
	o.clock = FakeClock::read;
	o.clock_arg = &clk_;
	make_opts(o);
	Blocker blk;
	block_one_opts(&blk);
	Rec queued;
	ASSERT_EQ(submit(rec_fn, &queued, NP_LANE_NORMAL), 0);

	Rec past, ok;
	Status st_past, st_ok;
	np_task_opts t{};
	t.policy = NP_SUBMIT_RUN_INLINE;
	t.deadline_ns = clk_.ns.load() - 1;
	t.done = status_done;
	t.done_arg = &st_past;
	ASSERT_EQ(np_workers_submit_opts(w_, rec_fn, &past, &t), 0);
	EXPECT_EQ(st_past.calls.load(), 1);
	EXPECT_EQ(st_past.status.load(), -ETIMEDOUT);
	EXPECT_EQ(st_past.on, std::this_thread::get_id());
	EXPECT_EQ(past.runs.load(), 0);

	t.deadline_ns = 0;
	t.done_arg = &st_ok;
	ASSERT_EQ(np_workers_submit_opts(w_, rec_fn, &ok, &t), 0);
	EXPECT_EQ(st_ok.calls.load(), 1);
	EXPECT_EQ(st_ok.status.load(), 0);
	EXPECT_EQ(ok.runs.load(), 1);
	EXPECT_EQ(ok.ran_on, std::this_thread::get_id());

	// The other lanes have room of their own: not run inline.
	Rec high;
	ASSERT_EQ(submit(rec_fn, &high, NP_LANE_HIGH, NP_SUBMIT_RUN_INLINE), 0);
	EXPECT_EQ(high.runs.load(), 0);

	np_workers_stats s = stats_of(w_);
	EXPECT_EQ(s.lanes[NP_LANE_NORMAL].ran_inline, 1u);
	EXPECT_EQ(s.lanes[NP_LANE_NORMAL].expired, 1u);
	EXPECT_EQ(s.lanes[NP_LANE_HIGH].queued, 1u);
	EXPECT_EQ(s.ran_inline, 1u);
	blk.release.open();
	np_workers_destroy(&w_);
	EXPECT_EQ(queued.runs.load(), 1);
	EXPECT_EQ(high.runs.load(), 1);
}

// Grow and shrink on the injected clock: a queued task that has waited
// grow_wait_ns while no worker is idle adds a thread (up to max_threads);
// workers idle for idle_ns retire down to nthreads and no further.
TEST_F(WorkersLaneTest, AdaptsThreadCountOnInjectedClock)
{
	np_workers_opts o{};
	o.nthreads = 1;
	o.max_threads = 3;
	o.grow_wait_ns = 1000;
	o.idle_ns = 1000000;
	o.clock = FakeClock::read;
	o.clock_arg = &clk_;
	make_opts(o);
	EXPECT_EQ(stats_of(w_).threads, 1u);

	Blocker a, b, c;
	block_one_opts(&a);
	ASSERT_EQ(submit(block_fn, &b, NP_LANE_NORMAL), 0);
	EXPECT_EQ(stats_of(w_).threads, 1u); // b has not waited yet
	clk_.advance(5000);
	ASSERT_EQ(submit(block_fn, &c, NP_LANE_NORMAL), 0); // b waited 5000
	EXPECT_EQ(stats_of(w_).threads, 2u);
	ASSERT_TRUE(b.started.wait());

	std::atomic<int> ran{0};
	clk_.advance(5000);
	ASSERT_EQ(submit(count_fn, &ran, NP_LANE_NORMAL), 0); // c waited 5000
	EXPECT_EQ(stats_of(w_).threads, 3u);
	ASSERT_TRUE(c.started.wait());
	clk_.advance(5000);
	ASSERT_EQ(submit(count_fn, &ran, NP_LANE_NORMAL), 0);
	np_workers_stats s = stats_of(w_);
	EXPECT_EQ(s.threads, 3u); // the ceiling
	EXPECT_EQ(s.grown, 2u);
	EXPECT_EQ(s.threads_peak, 3u);

	a.release.open();
	b.release.open();
	c.release.open();
	ASSERT_TRUE(poll([](const np_workers_stats &st) {
		return st.completed == 5 && st.queued == 0 && st.running == 0;
	}));
	EXPECT_EQ(ran.load(), 2);
	// The clock stands still: nobody has been idle for idle_ns.
	std::this_thread::sleep_for(5ms);
	EXPECT_EQ(stats_of(w_).threads, 3u);
	EXPECT_EQ(stats_of(w_).shrunk, 0u);

	clk_.advance(2000000);
	ASSERT_TRUE(poll([](const np_workers_stats &st) {
		return st.threads == 1;
	}));
	clk_.advance(2000000);
	std::this_thread::sleep_for(5ms); // a few idle polls: still the floor
	s = stats_of(w_);
	EXPECT_EQ(s.threads, 1u);
	EXPECT_EQ(s.shrunk, 2u);
	EXPECT_EQ(s.grown, 2u);

	// Retired slots are reused: the pool grows again, and still works.
	Blocker d, e;
	block_one_opts(&d);
	ASSERT_EQ(submit(block_fn, &e, NP_LANE_NORMAL), 0);
	clk_.advance(5000);
	ASSERT_EQ(submit(count_fn, &ran, NP_LANE_NORMAL), 0);
	ASSERT_TRUE(e.started.wait());
	EXPECT_EQ(stats_of(w_).threads, 2u);
	d.release.open();
	e.release.open();
	np_workers_destroy(&w_);
	EXPECT_EQ(ran.load(), 3);
}

// The same rules on the real clock with short periods: with every worker
// held, a task left waiting well past grow_wait_ns adds a thread at the next
// submit (or dequeue); once idle, the pool returns to its floor. Only lower
// bounds on time are relied on.
TEST_F(WorkersLaneTest, AdaptsThreadCountOnRealClock)
{
	np_workers_opts o{};
	o.nthreads = 1;
	o.max_threads = 4;
	o.grow_wait_ns = 1000000; // 1 ms
	o.idle_ns = 20000000;     // 20 ms
	make_opts(o);
	Blocker blk[3];
	block_one_opts(&blk[0]);
	std::atomic<int> ran{0};
	for (int i = 1; i < 3; i++) {
		ASSERT_EQ(submit(block_fn, &blk[i], NP_LANE_NORMAL), 0);
		std::this_thread::sleep_for(3ms); // > grow_wait_ns
		ASSERT_EQ(submit(count_fn, &ran, NP_LANE_NORMAL), 0);
		ASSERT_TRUE(blk[i].started.wait());
	}
	ASSERT_TRUE(poll([&](const np_workers_stats &) {
		return ran.load() == 2;
	}));
	np_workers_stats s = stats_of(w_);
	EXPECT_GE(s.threads, 3u);
	EXPECT_LE(s.threads, 4u);
	EXPECT_EQ(s.grown + 1, s.threads);
	for (auto &b : blk)
		b.release.open();
	ASSERT_TRUE(poll([](const np_workers_stats &st) {
		return st.threads == 1;
	}));
	s = stats_of(w_);
	EXPECT_EQ(s.shrunk, s.grown);
	EXPECT_EQ(s.grow_failed, 0u);
}

// Queue waits go to the task's lane: 100 high tasks that each waited
// exactly 1000 ns (injected clock) give max 1000, total 100000, and a p99
// read from the histogram within 25% above; the blocker's wait is normal's.
TEST_F(WorkersLaneTest, PerLaneWaitStatsAndQuantile)
{
	np_workers_opts o{};
	o.nthreads = 1;
	o.clock = FakeClock::read;
	o.clock_arg = &clk_;
	make_opts(o);
	Blocker blk;
	block_one_opts(&blk);
	std::atomic<int> ran{0};
	for (int i = 0; i < 100; i++)
		ASSERT_EQ(submit(count_fn, &ran, NP_LANE_HIGH), 0);
	clk_.advance(1000);
	blk.release.open();
	ASSERT_TRUE(poll([](const np_workers_stats &st) {
		return st.completed == 101 && st.running == 0;
	}));
	np_workers_stats s = stats_of(w_);
	const np_workers_lane_stats &h = s.lanes[NP_LANE_HIGH];
	EXPECT_EQ(h.completed, 100u);
	EXPECT_EQ(h.wait_ns_max, 1000u);
	EXPECT_EQ(h.wait_ns_total, 100000u);
	uint64_t p99 = np_workers_wait_quantile(&h, 0.99);
	EXPECT_GE(p99, 1000u);
	EXPECT_LE(p99, 1250u);
	EXPECT_EQ(s.lanes[NP_LANE_NORMAL].completed, 1u);
	EXPECT_EQ(s.lanes[NP_LANE_NORMAL].wait_ns_max, 0u);
	EXPECT_EQ(np_workers_wait_quantile(&s.lanes[NP_LANE_LOW], 0.99), 0u);
	EXPECT_EQ(s.completed, 101u);
	EXPECT_EQ(s.wait_ns_max, 1000u);

	// The histogram on its own: 99 short waits and one long one.
	np_workers_lane_stats ls{};
	ls.wait_hist[4] = 99; // [4, 5) ns
	ls.wait_hist[40] = 1; // [2^9 * 4, 2^9 * 5) = [2048, 2560) ns
	ls.wait_ns_max = 2100;
	EXPECT_EQ(np_workers_wait_quantile(&ls, 0.5), 4u);
	EXPECT_EQ(np_workers_wait_quantile(&ls, 0.99), 4u);
	EXPECT_EQ(np_workers_wait_quantile(&ls, 1.0), 2100u); // capped at max
}

TEST_F(WorkersLaneTest, SubmitOptsBadArguments)
{
	make(1, 4);
	Rec r;
	np_task_opts t{};
	EXPECT_EQ(np_workers_submit_opts(w_, nullptr, &r, &t), -EINVAL);
	t.lane = static_cast<np_lane>(NP_LANES);
	EXPECT_EQ(np_workers_submit_opts(w_, rec_fn, &r, &t), -EINVAL);
	t.lane = NP_LANE_LOW;
	t.policy = static_cast<np_submit_policy>(7);
	EXPECT_EQ(np_workers_submit_opts(w_, rec_fn, &r, &t), -EINVAL);
	// NULL options: normal lane, no deadline, no done.
	EXPECT_EQ(np_workers_submit_opts(w_, rec_fn, &r, nullptr), 0);
	np_workers_destroy(&w_);
	EXPECT_EQ(r.runs.load(), 1);
}

} // namespace
