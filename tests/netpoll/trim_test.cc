// np_opts.idle_trim_ms, over every backend: a loop that goes quiet gives
// its memory back (its cache of the group's pool trimmed, the pool's idle
// blocks released), once per quiet period; a busy loop never does, and
// makes no allocator call for it.
#include "netpoll/netpoll.h"
#include "tests/netpoll/np_test_util.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <unistd.h>

namespace {

using nptest::connect_to;
using nptest::read_n;
using nptest::write_all;

ssize_t echo(np_conn *c, bp_chain *in)
{
	if (bp_chain_cut(in, bp_chain_len(in), np_conn_out(c)) < 0)
		return -ENOMEM;
	return 0;
}

template <class F> bool wait_for(F f, int ms)
{
	auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
	while (std::chrono::steady_clock::now() < end) {
		if (f())
			return true;
		std::this_thread::sleep_for(std::chrono::milliseconds(5));
	}
	return f();
}

class IdleTrimTest : public ::testing::TestWithParam<np_backend> {
protected:
	np_group *g = nullptr;
	int port = 0;
	np_handler h{nullptr, echo, nullptr, nullptr};

	void start(int32_t idle_trim_ms)
	{
		np_opts o{};
		o.nloops = 1;
		o.idle_trim_ms = idle_trim_ms;
		NP_TEST_GROUP(g, port, o, &h);
		ASSERT_EQ(np_group_start(g), 0);
	}
	void TearDown() override { np_group_destroy(&g); }
	bp_stats pool()
	{
		bp_stats s;
		bp_pool_stats(np_group_pool(g), &s);
		return s;
	}
	// Echoes n bytes through fd (in pieces, so that blocks of several
	// sizes are used and freed).
	void echo_bytes(int fd, size_t n)
	{
		std::string msg(n, 'x');
		for (size_t i = 0; i < n; i++)
			msg[i] = static_cast<char>('a' + i % 23);
		std::thread w([&] { ASSERT_TRUE(write_all(fd, msg.data(), msg.size())); });
		EXPECT_EQ(read_n(fd, n), msg);
		w.join();
	}
};

#define START(ms)                                      \
	do {                                           \
		start(ms);                             \
		if (IsSkipped() || HasFatalFailure())  \
			return;                        \
	} while (0)

TEST_P(IdleTrimTest, QuietLoopTrimsOncePerQuietPeriod)
{
	START(200);
	int fd = connect_to(port);
	ASSERT_GE(fd, 0);
	echo_bytes(fd, 1u << 20);
	bp_stats s0 = pool();
	// Quiet from here: trimmed within 1 to 1.5 periods (slow builds: more).
	ASSERT_TRUE(wait_for([&] { return pool().trims > s0.trims; }, 5000));
	bp_stats s1 = pool();
	EXPECT_GE(s1.release_calls, s0.release_calls + 1);
	// Readiness backends read the 1 MiB into blocks of up to 64 KiB, whose
	// pages go back once free. io_uring reads into its ring's 4 KiB
	// buffers, which the ring keeps (in use): nothing of 8 KiB or more
	// is freed, and those buffers pin their regions.
	if (GetParam() != NP_BACKEND_URING) {
		EXPECT_GT(s1.released_bytes, s0.released_bytes) << "the 1 MiB echo's blocks";
	}
	// Not again while it stays quiet (three more periods).
	std::this_thread::sleep_for(std::chrono::milliseconds(600));
	bp_stats s2 = pool();
	EXPECT_EQ(s2.trims, s1.trims);
	EXPECT_EQ(s2.release_calls, s1.release_calls);
	// Activity, then quiet again: one more.
	echo_bytes(fd, 4096);
	ASSERT_TRUE(wait_for([&] { return pool().trims > s2.trims; }, 5000));
	// A connection that is still open works after its loop trimmed.
	echo_bytes(fd, 256 * 1024);
	close(fd);
}

TEST_P(IdleTrimTest, BusyLoopNeitherTrimsNorAllocates)
{
	START(300);
	int fd = connect_to(port);
	ASSERT_GE(fd, 0);
	for (int i = 0; i < 100; i++) { // warm
		ASSERT_TRUE(write_all(fd, "ping", 4));
		ASSERT_EQ(read_n(fd, 4), "ping");
	}
	bp_stats s0 = pool();
	// Four periods of steady round trips.
	auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(1200);
	int rounds = 0;
	while (std::chrono::steady_clock::now() < end) {
		ASSERT_TRUE(write_all(fd, "ping", 4));
		ASSERT_EQ(read_n(fd, 4), "ping");
		rounds++;
	}
	bp_stats s1 = pool();
	EXPECT_EQ(s1.trims, s0.trims) << rounds << " round trips";
	EXPECT_EQ(s1.release_calls, s0.release_calls);
	EXPECT_EQ(s1.sys_alloc_calls, s0.sys_alloc_calls);
	close(fd);
}

TEST_P(IdleTrimTest, NegativeTurnsItOff)
{
	START(-1);
	int fd = connect_to(port);
	ASSERT_GE(fd, 0);
	echo_bytes(fd, 64 * 1024);
	// Longer than any period the other tests wait for.
	std::this_thread::sleep_for(std::chrono::milliseconds(700));
	bp_stats s = pool();
	EXPECT_EQ(s.trims, 0u);
	EXPECT_EQ(s.release_calls, 0u);
	close(fd);
}

std::string backend_name(const ::testing::TestParamInfo<np_backend> &i)
{
	return i.param == NP_BACKEND_URING ? "io_uring" : np_backend_name(i.param);
}

INSTANTIATE_TEST_SUITE_P(Backends, IdleTrimTest, ::testing::ValuesIn(nptest::backends()),
                         backend_name);

} // namespace
