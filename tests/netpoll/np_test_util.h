// Blocking loopback client helpers shared by the netpoll tests. Reads and
// writes retry on EINTR, as a real client must (see docs/netpoll.md on the
// io_uring probe).
#pragma once

#include "netpoll/netpoll.h"

#include <arpa/inet.h>
#include <cerrno>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace nptest {

// The backends every parameterised suite runs over: epoll, io_uring
// (skipped where the kernel lacks it) and, in builds that have it, kqueue
// (GC_TEST_KQUEUE, set by tests/netpoll/CMakeLists.txt: libkqueue on Linux).
inline std::vector<np_backend> backends()
{
	return {NP_BACKEND_EPOLL, NP_BACKEND_URING,
#ifdef GC_TEST_KQUEUE
	        NP_BACKEND_KQUEUE,
#endif
	};
}

// A connected socket to 127.0.0.1:port (TCP_NODELAY, 10 s receive
// timeout), or -1.
// rcvbuf > 0 sets SO_RCVBUF before connecting: set after, on an
// established connection, it shrinks the buffer below the window already
// advertised, and the peer's in-window data (with the window updates it
// carries) is dropped — on loopback that can stall both directions.
inline int connect_to(int port, int rcvbuf = 0)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_port = htons(static_cast<uint16_t>(port));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	timeval tv{10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

// A peer that closed makes it return false, not raise SIGPIPE (which
// killed InputHoldTest.InMaxBoundsTheBlocksHeld on kqueue under TSan,
// where the close can land between two pieces); a descriptor that is not
// a socket is written to plainly.
inline bool write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == ENOTSOCK)
			w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= static_cast<size_t>(w);
	}
	return true;
}

inline std::string read_n(int fd, size_t n)
{
	std::string s(n, '\0');
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, &s[got], n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += static_cast<size_t>(r);
	}
	s.resize(got);
	return s;
}

} // namespace nptest

// In a test (or a fixture function returning void): creates group g with
// opts o and handler h for the fixture's backend (GetParam()), skipping
// the test where that backend is not available, then listens on a free
// loopback port (into port). Starting is the caller's (some set faults
// first).
#define NP_TEST_GROUP(g, port, o, h)                                         \
	do {                                                                 \
		(o).backend = GetParam();                                    \
		(g) = np_group_create(&(o), (h));                            \
		if (!(g) && errno == ENOSYS)                                 \
			GTEST_SKIP() << np_backend_name(GetParam())          \
			             << " not available here";               \
		ASSERT_NE((g), nullptr) << strerror(errno);                  \
		(port) = np_group_listen((g), "127.0.0.1", 0);               \
		ASSERT_GT((port), 0);                                        \
	} while (0)
