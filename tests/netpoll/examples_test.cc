// The examples, run as the programs they are: start, talk to them over
// loopback, stop them with SIGTERM and check they exit 0.
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

int dial(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_port = htons(static_cast<uint16_t>(port));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	timeval tv{10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

bool send_all(int fd, const std::string &s)
{
	size_t off = 0;
	while (off < s.size()) {
		ssize_t w = write(fd, s.data() + off, s.size() - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		off += static_cast<size_t>(w);
	}
	return true;
}

std::string recv_n(int fd, size_t n)
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

INSTANTIATE_TEST_SUITE_P(Backends, Examples, ::testing::Values("epoll", "io_uring"));

} // namespace
