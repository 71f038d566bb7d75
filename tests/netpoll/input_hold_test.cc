// How much memory a connection's unparsed input pins, on every backend:
// input trickled in pieces, each received on its own, is held in blocks
// about as full as the bytes (at most 1.5 times them), whatever the sizes
// of the pieces; so in_max, a bound in bytes, bounds the blocks too. On
// io_uring every receive lands in a 4 KiB provided buffer, and adopting
// each piece's buffer held 3.7 times the bytes for 1100-byte pieces
// (docs/netpoll.md, "How io_uring holds input").
#include "netpoll/netpoll.h"
#include "tests/netpoll/np_test_util.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using nptest::connect_to;
using nptest::read_n;
using nptest::write_all;

constexpr size_t kWant = 256 * 1024; // what the handler waits for
constexpr double kBound = 1.5;

// Consumes nothing until kWant bytes are in, then answers one byte: the
// input chain holds everything that trickles in meanwhile (a SET waiting
// for its value).
ssize_t want_all(np_conn *c, bp_chain *in)
{
	if (bp_chain_len(in) < kWant)
		return static_cast<ssize_t>(kWant);
	bp_chain_skip(in, kWant);
	return bp_chain_append(np_conn_out(c), "k", 1) < 0 ? -ENOMEM : 0;
}

std::atomic<int> g_closes{0}, g_last_err{0};

void on_close(np_conn *, int err)
{
	g_last_err = err;
	g_closes++;
}

class InputHoldTest : public ::testing::TestWithParam<np_backend> {
protected:
	np_group *g = nullptr;
	int port = 0;

	void start(size_t in_max = 0)
	{
		static const np_handler h{nullptr, want_all, on_close, nullptr};
		g_closes = 0;
		g_last_err = 0;
		np_opts o{};
		o.nloops = 1;
		o.in_max = in_max;
		NP_TEST_GROUP(g, port, o, &h);
		ASSERT_EQ(np_group_start(g), 0);
	}
	void TearDown() override { np_group_destroy(&g); }

	uint64_t bytes_read()
	{
		np_stats s;
		np_group_stats(g, &s);
		return s.bytes_read;
	}
	uint64_t in_use()
	{
		bp_stats s;
		bp_pool_stats(np_group_pool(g), &s);
		return s.bytes_in_use;
	}
	// Waits until the loop has read `total` bytes (so that the next piece
	// is received on its own); false after 10 s.
	bool read_up_to(uint64_t total)
	{
		auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
		while (bytes_read() < total) {
			if (std::chrono::steady_clock::now() > deadline)
				return false;
			std::this_thread::sleep_for(std::chrono::microseconds(20));
		}
		return true;
	}

	// Two connections, interleaved, each sent pieces of the sizes in
	// `sizes` (round and round) up to kWant - 1 bytes; returns the pool's
	// growth over the bytes held, once all is read.
	double held_ratio(const std::vector<size_t> &sizes)
	{
		int fds[2];
		for (int &fd : fds) {
			fd = connect_to(port);
			EXPECT_GE(fd, 0);
		}
		// The first piece of each starts its chain: the base is taken
		// after it (io_uring's ring is filled as its loop starts).
		uint64_t total = bytes_read();
		for (int fd : fds) {
			EXPECT_TRUE(write_all(fd, "s", 1));
			total++;
		}
		EXPECT_TRUE(read_up_to(total));
		uint64_t base = in_use();
		size_t sent[2] = {1, 1}, k[2] = {0, 0};
		std::string piece(8192, 'v');
		while (sent[0] < kWant - 1 || sent[1] < kWant - 1) {
			for (int i = 0; i < 2; i++) {
				size_t n = std::min(sizes[k[i]++ % sizes.size()], kWant - 1 - sent[i]);
				if (!n)
					continue;
				EXPECT_TRUE(write_all(fds[i], piece.data(), n));
				sent[i] += n;
				total += n;
				if (!read_up_to(total)) {
					ADD_FAILURE() << "the loop stopped reading at " << bytes_read();
					return 0;
				}
			}
		}
		double held = static_cast<double>(sent[0] + sent[1] - 2);
		double grown = static_cast<double>(in_use()) - static_cast<double>(base);
		for (int fd : fds) {
			EXPECT_TRUE(write_all(fd, "v", 1));
			EXPECT_EQ(read_n(fd, 1), "k");
			close(fd);
		}
		fprintf(stderr, "%s: pieces of", np_backend_name(GetParam()));
		for (size_t n : sizes)
			fprintf(stderr, " %zu", n);
		fprintf(stderr, ": %.0f bytes held in %.0f (%.2fx)\n", held, grown, grown / held);
		return grown / held;
	}
};

#define START(...)                                  \
	do {                                            \
		start(__VA_ARGS__);                     \
		if (IsSkipped() || HasFatalFailure())   \
			return;                         \
	} while (0)

TEST_P(InputHoldTest, PiecesOf1100Bytes)
{
	START();
	double r = held_ratio({1100});
	EXPECT_LE(r, kBound) << "1100-byte pieces";
}

// Small pieces after large ones and the other way round: each large piece
// adopted (io_uring) or read beside the small one, the blocks they leave
// behind must still be mostly full.
TEST_P(InputHoldTest, PiecesOfMixedSizes)
{
	START();
	for (const auto &sizes : std::vector<std::vector<size_t>>{
	             {40, 4000}, {2100}, {3016, 57}, {1, 700, 2500, 4096, 1023, 3000}}) {
		double r = held_ratio(sizes);
		std::string name;
		for (size_t n : sizes)
			name += std::to_string(n) + " ";
		EXPECT_LE(r, kBound) << "pieces of " << name;
	}
}

// in_max bounds bytes; the blocks behind them stay within kBound of it
// until the connection is closed with -EMSGSIZE.
TEST_P(InputHoldTest, InMaxBoundsTheBlocksHeld)
{
	constexpr size_t kMax = 128 * 1024; // under kWant: the handler never answers
	START(kMax);
	int fd = connect_to(port);
	ASSERT_GE(fd, 0);
	ASSERT_TRUE(write_all(fd, "s", 1));
	ASSERT_TRUE(read_up_to(1));
	uint64_t base = in_use(), total = 1;
	int64_t peak = 0;
	std::string piece(1100, 'v');
	while (g_closes == 0 && total < 2 * kMax) {
		if (!write_all(fd, piece.data(), piece.size()))
			break; // closed under us
		total += piece.size();
		if (!read_up_to(std::min<uint64_t>(total, kMax)))
			break;
		peak = std::max(peak, static_cast<int64_t>(in_use()) - static_cast<int64_t>(base));
	}
	for (int i = 0; i < 500 && g_closes == 0; i++)
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	fprintf(stderr, "%s: in_max %zu, at most %lld bytes held in blocks\n",
	        np_backend_name(GetParam()), kMax, static_cast<long long>(peak));
	EXPECT_EQ(g_closes, 1);
	EXPECT_EQ(g_last_err, -EMSGSIZE);
	EXPECT_LE(static_cast<double>(peak), kBound * kMax) << "peak growth " << peak;
	close(fd);
}

std::string backend_name(const ::testing::TestParamInfo<np_backend> &i)
{
	return np_backend_name(i.param);
}

INSTANTIATE_TEST_SUITE_P(Backends, InputHoldTest, ::testing::ValuesIn(nptest::backends()),
                         backend_name);

} // namespace
