// The examples, run as the programs they are: start, talk to them over
// loopback, stop them with SIGTERM and check they exit 0.
#include "tests/netpoll/np_test_util.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

struct Proc {
	pid_t pid = -1;
	int port = 0;
	Proc(const char *path, const char *backend)
	{
		int out[2];
		if (pipe(out) != 0)
			return;
		pid = fork();
		if (pid == 0) {
			dup2(out[1], 1);
			close(out[0]);
			execl(path, path, "-t", "2", "-b", backend, static_cast<char *>(nullptr));
			_exit(127);
		}
		close(out[1]);
		FILE *f = fdopen(out[0], "r");
		char line[256] = {};
		if (f && fgets(line, sizeof(line), f))
			sscanf(line, "listening on 127.0.0.1:%d", &port);
		if (f)
			fclose(f);
	}
	int stop()
	{
		int st = -1;
		if (pid > 0) {
			kill(pid, SIGTERM);
			waitpid(pid, &st, 0);
			pid = -1;
		}
		return st;
	}
	~Proc() { stop(); }
};

int dial(int port) { return nptest::connect_to(port); }

bool send_all(int fd, const std::string &s) { return nptest::write_all(fd, s.data(), s.size()); }

std::string recv_n(int fd, size_t n) { return nptest::read_n(fd, n); }

std::string frame(const std::string &payload)
{
	uint32_t n = htonl(static_cast<uint32_t>(payload.size()));
	return std::string(reinterpret_cast<char *>(&n), 4) + payload;
}

class Examples : public ::testing::TestWithParam<const char *> {};

TEST_P(Examples, EchoServer)
{
	Proc p(GC_ECHO_SERVER, GetParam());
	ASSERT_GT(p.port, 0);
	int fd = dial(p.port);
	ASSERT_GE(fd, 0);
	std::string msg(100000, 'e');
	ASSERT_TRUE(send_all(fd, msg));
	EXPECT_EQ(recv_n(fd, msg.size()), msg);
	close(fd);
	int st = p.stop();
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

TEST_P(Examples, RpcEchoFramesPipelinedAndLarge)
{
	Proc p(GC_RPC_ECHO, GetParam());
	ASSERT_GT(p.port, 0);
	int fd = dial(p.port);
	ASSERT_GE(fd, 0);
	std::string all;
	for (int i = 0; i < 200; i++)
		all += frame("request " + std::to_string(i));
	all += frame(std::string(1 << 20, 'x')); // 1 MiB frame
	all += frame("");                           // empty frame
	// Send in awkward pieces: 3 bytes, then the rest.
	ASSERT_TRUE(send_all(fd, all.substr(0, 3)));
	ASSERT_TRUE(send_all(fd, all.substr(3)));
	EXPECT_EQ(recv_n(fd, all.size()), all);
	close(fd);
	int st = p.stop();
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, Examples, ::testing::Values("epoll", "io_uring"
#ifdef GC_TEST_KQUEUE
                                                                 , "kqueue"
#endif
                                                                 ));

} // namespace
