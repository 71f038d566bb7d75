// netpoll when the block pool refuses memory (bufpool's fault injection,
// bp_fault_set): io_uring's provided-buffer ring refills and recovers, a
// receive out of buffers waits instead of spinning the loop, a gathered
// send or a small piece's copy without memory takes the way that needs
// none, and a read with no memory at all closes its connection with
// -ENOMEM on every backend, leaking nothing.
#include "netpoll/netpoll.h"
#include "tests/netpoll/np_test_util.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace {

using nptest::connect_to;
using nptest::read_n;
using nptest::write_all;

constexpr uint64_t kRingSlots = 1024; // uring.c's NBUFS

struct Counts {
	std::atomic<int> closes{0}, close_errs{0}, last_err{0};
};

Counts *counts_of(np_conn *c)
{
	return static_cast<Counts *>(np_group_udata(np_loop_group(np_conn_loop(c))));
}

// Echo: the whole input to the output, by reference.
ssize_t echo_data(np_conn *c, bp_chain *in)
{
	return bp_chain_cut(in, bp_chain_len(in), np_conn_out(c)) < 0 ? -ENOMEM : 0;
}

// Echo once kCollect bytes are in: until then the input stays unconsumed,
// so that io_uring copies small pieces onto it (on_recv).
constexpr size_t kCollect = 20000;
ssize_t collect_data(np_conn *c, bp_chain *in)
{
	if (bp_chain_len(in) < kCollect)
		return kCollect;
	return echo_data(c, in);
}

void count_close(np_conn *c, int err)
{
	Counts *k = counts_of(c);
	// The error first: a test that waits for `closes` then reads it.
	if (err) {
		k->last_err = err;
		k->close_errs++;
	}
	k->closes++;
}

std::string pattern(size_t n, unsigned seed)
{
	std::string s(n, '\0');
	std::mt19937 rng(seed);
	for (auto &ch : s)
		ch = static_cast<char>('a' + rng() % 26);
	return s;
}

template <class F> bool wait_for(F f, int ms = 5000)
{
	for (int i = 0; i < ms / 5; i++) {
		if (f())
			return true;
		std::this_thread::sleep_for(std::chrono::milliseconds(5));
	}
	return f();
}

// n bytes from fd, waiting through receive timeouts up to 30 s in all.
std::string read_all(int fd, size_t n)
{
	std::string s;
	auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
	while (s.size() < n && std::chrono::steady_clock::now() < end) {
		errno = 0;
		std::string part = read_n(fd, n - s.size());
		s += part;
		if (part.empty() && errno != EAGAIN && errno != EINTR)
			break; // EOF or an error
	}
	return s;
}

#define START(...)                                  \
	do {                                            \
		start(__VA_ARGS__);                     \
		if (IsSkipped() || HasFatalFailure())   \
			return;                         \
	} while (0)

class FaultTest : public ::testing::TestWithParam<np_backend> {
protected:
	Counts counts;
	np_group *g = nullptr;
	int port = 0;

	// Creates the group; `fault`, when given, is set before the loop
	// threads start (and so before io_uring fills its ring).
	void start(np_handler h, const char *fault = nullptr)
	{
		np_opts o{};
		o.udata = &counts;
		o.nloops = 1;
		NP_TEST_GROUP(g, port, o, &h);
		if (fault) {
			ASSERT_EQ(bp_fault_set(fault), 0);
		}
		ASSERT_EQ(np_group_start(g), 0);
		// Posts run once the loop's backend is up (io_uring's ring
		// filled): a test's later bp_fault_set must not reach it first.
		std::atomic<bool> up{false};
		ASSERT_EQ(np_loop_post(np_group_loop(g, 0),
		                       [](void *a) { static_cast<std::atomic<bool> *>(a)->store(true); },
		                       &up), 0);
		ASSERT_TRUE(wait_for([&] { return up.load(); }));
	}
	// A server that closes early must fail the test, not kill it.
	void SetUp() override { signal(SIGPIPE, SIG_IGN); }
	void TearDown() override
	{
		EXPECT_EQ(bp_fault_set(nullptr), 0);
		np_group_destroy(&g); // debug builds abort on blocks still in use
	}
	np_stats stats()
	{
		np_stats s;
		np_group_stats(g, &s);
		return s;
	}
	bp_stats pool()
	{
		bp_stats s;
		bp_pool_stats(np_group_pool(g), &s);
		return s;
	}
	// An echo of n bytes on a new connection comes back intact.
	void echo_ok(size_t n, unsigned seed)
	{
		int fd = connect_to(port);
		ASSERT_GE(fd, 0);
		std::string msg = pattern(n, seed);
		ASSERT_TRUE(write_all(fd, msg.data(), msg.size()));
		std::string got = read_all(fd, n);
		EXPECT_EQ(got.size(), n);
		EXPECT_TRUE(got == msg) << "the echo differs";
		close(fd);
	}
};

class UringFaultTest : public FaultTest {};

// bufs_retry refills the slots the pool refused, with a back-off, until
// none is empty: with every slot refused at start-up, then a third of the
// refills refused, then none, the empty count returns to 0 (it stayed
// above 0 for good when a failed retry counted its slot again).
TEST_P(UringFaultTest, RingRefillsRecover)
{
	START({nullptr, echo_data, count_close, nullptr}, "every:1,min:4000");
	ASSERT_TRUE(wait_for([&] { return stats().ring_empty_slots == kRingSlots; }))
	        << stats().ring_empty_slots;
	std::this_thread::sleep_for(std::chrono::milliseconds(200));
	np_stats s = stats();
	EXPECT_EQ(s.ring_empty_slots, kRingSlots);
	// Backed off: 1, 2, 4 ... 64 ms apart, a handful of tries, not one
	// per wait (an idle loop waits without end otherwise).
	EXPECT_GE(s.ring_retries, 3u);
	EXPECT_LE(s.ring_retries, 20u);
	EXPECT_LE(s.wait_calls, 40u);

	ASSERT_EQ(bp_fault_set("every:3,min:4000"), 0);
	ASSERT_TRUE(wait_for([&] { return stats().ring_empty_slots < kRingSlots; }));
	ASSERT_EQ(bp_fault_set(nullptr), 0);
	ASSERT_TRUE(wait_for([&] { return stats().ring_empty_slots == 0; }, 2000))
	        << "empty slots left: " << stats().ring_empty_slots;
	EXPECT_GT(pool().faults_injected, kRingSlots);
	echo_ok(256 * 1024, 1);
	EXPECT_EQ(counts.close_errs, 0) << strerror(-counts.last_err);
}

// A connection keeps sending while every ring refill is refused: the
// ring empties, its receive ends with -ENOBUFS and is parked (re-armed at
// once it would end again at once, every loop turn), the loop sleeps
// between backed-off refills, and once memory is back the connection
// resumes and every byte arrives intact.
TEST_P(UringFaultTest, EmptyRingDoesNotSpin)
{
	START({nullptr, echo_data, count_close, nullptr});
	echo_ok(1000, 2);
	int fd = connect_to(port);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(bp_fault_set("every:1,min:4000"), 0);
	const size_t n = 16u << 20;
	std::string msg = pattern(n, 3);
	std::thread writer([&] { write_all(fd, msg.data(), msg.size()); });
	std::string got;
	std::thread reader([&] { got = read_all(fd, n); });

	bool dry = wait_for([&] {
		np_stats s = stats();
		return s.recv_nobufs > 0 && s.ring_empty_slots == kRingSlots;
	}, 10000);
	// What came in before the ring ran dry goes back out first (a piece
	// per send: the msghdr block is refused too); then all is quiet.
	bool drained = wait_for([&] {
		np_stats s = stats();
		return s.bytes_written == s.bytes_read;
	});
	np_stats s0 = stats();
	std::this_thread::sleep_for(std::chrono::milliseconds(300));
	np_stats s1 = stats();
	ASSERT_EQ(bp_fault_set(nullptr), 0);
	writer.join();
	reader.join();
	close(fd);

	ASSERT_TRUE(dry) << "the ring never ran dry";
	EXPECT_TRUE(drained);
	EXPECT_GE(s0.recv_parked, 1u);
	// 300 ms of a parked receive: a few backed-off refills and the
	// wake-ups for them (a spinning loop makes tens of thousands).
	EXPECT_LE(s1.wait_calls - s0.wait_calls, 40u);
	EXPECT_LE(s1.recv_nobufs - s0.recv_nobufs, 2u);
	EXPECT_LE(s1.ring_retries - s0.ring_retries, 15u);
	EXPECT_GE(s1.ring_retries - s0.ring_retries, 2u);
	EXPECT_EQ(got.size(), n);
	EXPECT_TRUE(got == msg) << "the echo differs";
	EXPECT_TRUE(wait_for([&] { return stats().ring_empty_slots == 0; }));
	EXPECT_EQ(counts.close_errs, 0) << strerror(-counts.last_err);
}

// Without memory for a small piece's copy (on_recv appends pieces under
// 1 KiB to unparsed input) the piece is adopted instead, and without
// memory for a gathered send's msghdr the output goes a piece at a time:
// both used to close the connection with -ENOMEM.
TEST_P(UringFaultTest, CopyAndGatherWithoutMemory)
{
	START({nullptr, collect_data, count_close, nullptr});
	int fd = connect_to(port);
	ASSERT_GE(fd, 0);
	// Blocks of 1000 bytes and more fail: the chain's write blocks, the
	// msghdr block, ring refills. Nodes still come.
	ASSERT_EQ(bp_fault_set("every:1,min:1000"), 0);
	std::string msg = pattern(kCollect, 4);
	for (size_t off = 0; off < msg.size(); off += 100) {
		ASSERT_TRUE(write_all(fd, msg.data() + off, 100));
		if (off % 1000 == 0)
			std::this_thread::sleep_for(std::chrono::milliseconds(1));
	}
	std::string got = read_all(fd, msg.size());
	np_stats st = stats();
	EXPECT_GT(st.write_calls, 2u) << "sent a piece at a time";
	EXPECT_EQ(got.size(), msg.size()) << "server read " << st.bytes_read << ", wrote "
	                                  << st.bytes_written;
	EXPECT_TRUE(got == msg) << "the echo differs";
	close(fd);
	EXPECT_GT(pool().faults_injected, 0u);
	EXPECT_EQ(counts.close_errs, 0) << strerror(-counts.last_err);
}

// With every get refused, the read of a connection's bytes fails: the
// connection closes with -ENOMEM (reported, not dropped silently), and
// once memory is back new connections work and nothing leaked.
TEST_P(FaultTest, NoMemoryForAReadClosesWithEnomem)
{
	START({nullptr, echo_data, count_close, nullptr});
	int fd = connect_to(port);
	ASSERT_GE(fd, 0);
	std::string msg = pattern(300, 5);
	ASSERT_TRUE(write_all(fd, msg.data(), msg.size()));
	ASSERT_EQ(read_n(fd, msg.size()), msg);
	bp_stats base = pool();
	ASSERT_EQ(bp_fault_set("every:1"), 0);
	ASSERT_TRUE(write_all(fd, msg.data(), msg.size()));
	char ch;
	EXPECT_LE(read(fd, &ch, 1), 0) << "closed";
	EXPECT_TRUE(wait_for([&] { return counts.closes.load() == 1; }));
	EXPECT_EQ(counts.last_err, -ENOMEM);
	close(fd);
	ASSERT_EQ(bp_fault_set(nullptr), 0);
	EXPECT_GT(pool().faults_injected, base.faults_injected);
	echo_ok(64 * 1024, 6);
	EXPECT_EQ(counts.close_errs, 1);
}

std::string backend_name(const ::testing::TestParamInfo<np_backend> &i)
{
	return i.param == NP_BACKEND_URING ? "io_uring" : np_backend_name(i.param);
}

INSTANTIATE_TEST_SUITE_P(Backends, FaultTest,
                         ::testing::ValuesIn(nptest::backends()),
                         backend_name);
INSTANTIATE_TEST_SUITE_P(Backends, UringFaultTest, ::testing::Values(NP_BACKEND_URING),
                         backend_name);

} // namespace
