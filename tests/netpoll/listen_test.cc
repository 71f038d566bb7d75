// The listeners (netpoll/accept.c), over every backend: IPv4 and IPv6 on
// one port with every loop serving each address, unix stream sockets
// (permissions, a stale file replaced, a live one refused, the file
// removed at stop), and the hand-off mode over several listeners.
#include "netpoll/netpoll.h"
#include "tests/netpoll/np_test_util.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using nptest::read_n;
using nptest::write_all;

// Which loop took each connection, by the family it was accepted on.
struct Seen {
	std::mutex mu;
	int by[3][2] = {}; // [inet, inet6, unix][loop 0, loop 1]
	std::atomic<int> opens{0};
};

int family_index(int fd)
{
	sockaddr_storage ss{};
	socklen_t len = sizeof(ss);
	if (getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len) < 0)
		return -1;
	return ss.ss_family == AF_INET ? 0 : ss.ss_family == AF_INET6 ? 1 : 2;
}

int seen_open(np_conn *c)
{
	auto *s = static_cast<Seen *>(np_group_udata(np_loop_group(np_conn_loop(c))));
	int f = family_index(np_conn_fd(c));
	int l = np_loop_index(np_conn_loop(c));
	{
		std::lock_guard<std::mutex> g(s->mu);
		if (f >= 0 && l < 2)
			s->by[f][l]++;
	}
	s->opens++;
	return 0;
}

ssize_t echo_data(np_conn *c, bp_chain *in)
{
	if (bp_chain_cut(in, bp_chain_len(in), np_conn_out(c)) < 0)
		return -ENOMEM;
	return 0;
}

// A blocking client socket connected to addr, or -1.
int dial(const sockaddr *a, socklen_t len)
{
	int fd = socket(a->sa_family, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, a, len) < 0) {
		close(fd);
		return -1;
	}
	timeval tv{10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

int dial_tcp(const char *host, int port)
{
	sockaddr_storage ss{};
	socklen_t len;
	if (strchr(host, ':')) {
		auto *a = reinterpret_cast<sockaddr_in6 *>(&ss);
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(static_cast<uint16_t>(port));
		inet_pton(AF_INET6, host, &a->sin6_addr);
		len = sizeof(*a);
	} else {
		auto *a = reinterpret_cast<sockaddr_in *>(&ss);
		a->sin_family = AF_INET;
		a->sin_port = htons(static_cast<uint16_t>(port));
		inet_pton(AF_INET, host, &a->sin_addr);
		len = sizeof(*a);
	}
	return dial(reinterpret_cast<sockaddr *>(&ss), len);
}

int dial_unix(const std::string &path)
{
	sockaddr_un a{};
	a.sun_family = AF_UNIX;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
	return dial(reinterpret_cast<sockaddr *>(&a), sizeof(a));
}

// Whether this machine can bind ::1 (no IPv6, or no loopback address).
bool have_ipv6_loopback()
{
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	if (fd < 0)
		return false;
	sockaddr_in6 a{};
	a.sin6_family = AF_INET6;
	a.sin6_addr = in6addr_loopback;
	bool ok = bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0;
	close(fd);
	return ok;
}

bool echo_ok(int fd, const std::string &msg)
{
	return fd >= 0 && write_all(fd, msg.data(), msg.size()) && read_n(fd, msg.size()) == msg;
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

class ListenTest : public ::testing::TestWithParam<np_backend> {
protected:
	Seen seen;
	np_group *g = nullptr;
	np_handler h{seen_open, echo_data, nullptr, nullptr};
	std::string dir, path;

	void SetUp() override
	{
		char t[] = "/tmp/np_listen_XXXXXX";
		ASSERT_NE(mkdtemp(t), nullptr);
		dir = t;
		path = dir + "/s.sock";
	}
	void TearDown() override
	{
		np_group_destroy(&g);
		unlink(path.c_str());
		rmdir(dir.c_str());
	}
	// Creates the group (not started); skips if the backend cannot run.
	void create(int nloops, np_accept_mode mode = NP_ACCEPT_REUSEPORT)
	{
		np_opts o{};
		o.backend = GetParam();
		o.nloops = nloops;
		o.accept_mode = mode;
		o.udata = &seen;
		g = np_group_create(&o, &h);
		if (!g && errno == ENOSYS)
			GTEST_SKIP() << np_backend_name(GetParam()) << " not available here";
		ASSERT_NE(g, nullptr) << strerror(errno);
	}
	np_stats stats()
	{
		np_stats s;
		np_group_stats(g, &s);
		return s;
	}
};

#define CREATE(...)                                 \
	do {                                        \
		create(__VA_ARGS__);                \
		if (IsSkipped() || HasFatalFailure()) \
			return;                     \
	} while (0)

TEST_P(ListenTest, BadAddressesAreRefused)
{
	CREATE(1);
	EXPECT_EQ(np_group_listen(g, "localhost", 0), -EINVAL);
	EXPECT_EQ(np_group_listen(g, "127.0.0.1:80", 0), -EINVAL);
	EXPECT_EQ(np_group_listen(g, "[::1", 0), -EINVAL);
	EXPECT_EQ(np_group_listen_unix(g, "", 0700), -EINVAL);
	EXPECT_EQ(np_group_listen_unix(g, std::string(200, 'x').c_str(), 0700), -ENAMETOOLONG);
}

// IPv4 and IPv6 on one port: every loop has a socket for each address,
// and the kernel spreads each address's connections over the loops.
TEST_P(ListenTest, EveryLoopServesEveryAddress)
{
	if (!have_ipv6_loopback())
		GTEST_SKIP() << "no IPv6 loopback (::1) on this machine";
	CREATE(2);
	int port = np_group_listen(g, "127.0.0.1", 0);
	ASSERT_GT(port, 0);
	ASSERT_EQ(np_group_listen(g, "[::1]", static_cast<uint16_t>(port)), port);
	ASSERT_EQ(np_group_start(g), 0);
	std::vector<int> fds;
	for (int i = 0; i < 64; i++) {
		int fd = dial_tcp(i % 2 ? "::1" : "127.0.0.1", port);
		ASSERT_TRUE(echo_ok(fd, "hello " + std::to_string(i))) << i;
		fds.push_back(fd);
	}
	ASSERT_TRUE(wait_for([&] { return seen.opens == 64; }));
	std::lock_guard<std::mutex> lk(seen.mu);
	for (int f = 0; f < 2; f++)
		for (int l = 0; l < 2; l++)
			EXPECT_GT(seen.by[f][l], 0) << "family " << f << " loop " << l;
	for (int fd : fds)
		close(fd);
}

TEST_P(ListenTest, UnixSocketServedWithItsModeAndRemovedAtStop)
{
	CREATE(2);
	ASSERT_EQ(np_group_listen_unix(g, path.c_str(), 0640), 0);
	struct stat st;
	ASSERT_EQ(lstat(path.c_str(), &st), 0);
	EXPECT_TRUE(S_ISSOCK(st.st_mode));
	EXPECT_EQ(st.st_mode & 07777, 0640u);
	ASSERT_EQ(np_group_start(g), 0);
	std::vector<int> fds;
	for (int i = 0; i < 32; i++) {
		int fd = dial_unix(path);
		ASSERT_TRUE(echo_ok(fd, "unix " + std::to_string(i))) << i;
		fds.push_back(fd);
	}
	ASSERT_TRUE(wait_for([&] { return seen.opens == 32; }));
	{
		std::lock_guard<std::mutex> lk(seen.mu);
		EXPECT_EQ(seen.by[2][0] + seen.by[2][1], 32);
	}
	for (int fd : fds)
		close(fd);
	np_group_stop(g, 1000);
	EXPECT_NE(lstat(path.c_str(), &st), 0);
	EXPECT_EQ(errno, ENOENT);
}

TEST_P(ListenTest, StaleUnixSocketIsReplacedLiveOneRefused)
{
	// A socket file nothing listens on: what a crashed server leaves.
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	sockaddr_un a{};
	a.sun_family = AF_UNIX;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
	ASSERT_EQ(bind(s, reinterpret_cast<sockaddr *>(&a), sizeof(a)), 0);
	close(s);
	CREATE(1);
	ASSERT_EQ(np_group_listen_unix(g, path.c_str(), 0700), 0);
	ASSERT_EQ(np_group_start(g), 0);
	auto once = [&](const char *msg) {
		int fd = dial_unix(path);
		bool ok = echo_ok(fd, msg);
		if (fd >= 0)
			close(fd);
		return ok;
	};
	EXPECT_TRUE(once("x"));
	// A second group on the live socket is refused, and leaves it alone.
	np_opts o{};
	o.backend = GetParam();
	o.nloops = 1;
	np_group *g2 = np_group_create(&o, &h);
	ASSERT_NE(g2, nullptr);
	EXPECT_EQ(np_group_listen_unix(g2, path.c_str(), 0700), -EADDRINUSE);
	np_group_destroy(&g2);
	EXPECT_TRUE(once("still there"));
	np_group_destroy(&g);
	// Not a socket: never removed.
	int f = open(path.c_str(), O_CREAT | O_WRONLY, 0600);
	ASSERT_GE(f, 0);
	close(f);
	CREATE(1);
	EXPECT_EQ(np_group_listen_unix(g, path.c_str(), 0700), -EEXIST);
	struct stat st;
	EXPECT_EQ(lstat(path.c_str(), &st), 0);
}

// HANDOFF with several listeners (TCP and unix): loop 0 accepts on each,
// and hands connections on to the least-loaded loop.
TEST_P(ListenTest, HandoffOverSeveralListeners)
{
	CREATE(2, NP_ACCEPT_HANDOFF);
	int port = np_group_listen(g, "127.0.0.1", 0);
	ASSERT_GT(port, 0);
	ASSERT_EQ(np_group_listen_unix(g, path.c_str(), 0700), 0);
	ASSERT_EQ(np_group_start(g), 0);
	std::vector<int> fds;
	for (int i = 0; i < 8; i++) {
		int fd = i % 2 ? dial_unix(path) : dial_tcp("127.0.0.1", port);
		ASSERT_TRUE(echo_ok(fd, "h" + std::to_string(i))) << i;
		fds.push_back(fd);
		ASSERT_TRUE(wait_for([&] { return stats().conns_current == fds.size(); }));
	}
	EXPECT_EQ(stats().handoffs, 4u);
	for (int fd : fds)
		close(fd);
}

// The client side over IPv6.
TEST_P(ListenTest, ConnectOverIpv6)
{
	if (!have_ipv6_loopback())
		GTEST_SKIP() << "no IPv6 loopback (::1) on this machine";
	CREATE(1);
	int port = np_group_listen(g, "::1", 0);
	ASSERT_GT(port, 0);
	ASSERT_EQ(np_group_start(g), 0);
	struct Arg {
		np_loop *l;
		int port;
		std::atomic<int> rc{1};
	} arg;
	arg.l = np_group_loop(g, 0);
	arg.port = port;
	ASSERT_EQ(np_loop_post(arg.l, [](void *p) {
		auto *a = static_cast<Arg *>(p);
		a->rc = np_connect(a->l, "::1", static_cast<uint16_t>(a->port), nullptr);
	}, &arg), 0);
	// Both ends open (the client's on_open too), both on IPv6.
	ASSERT_TRUE(wait_for([&] { return seen.opens == 2; }));
	EXPECT_EQ(arg.rc, 0);
	std::lock_guard<std::mutex> lk(seen.mu);
	EXPECT_EQ(seen.by[1][0], 2);
}

std::string backend_name(const ::testing::TestParamInfo<np_backend> &i)
{
	return i.param == NP_BACKEND_URING ? "io_uring" : np_backend_name(i.param);
}

INSTANTIATE_TEST_SUITE_P(Backends, ListenTest, ::testing::ValuesIn(nptest::backends()),
                         backend_name);

} // namespace
