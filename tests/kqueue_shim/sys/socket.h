/* Declarations for the FreeBSD compile check of netpoll only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_SYS_SOCKET_H
#define GEECACHE_SHIM_SYS_SOCKET_H

#include <sys/types.h>

typedef uint32_t socklen_t;
typedef uint8_t sa_family_t;

struct iovec;

struct sockaddr {
	uint8_t sa_len;
	sa_family_t sa_family;
	char sa_data[14];
};

struct sockaddr_storage {
	uint8_t ss_len;
	sa_family_t ss_family;
	char __ss_pad1[6];
	int64_t __ss_align;
	char __ss_pad2[112];
};

struct msghdr {
	void *msg_name;
	socklen_t msg_namelen;
	struct iovec *msg_iov;
	int msg_iovlen;
	void *msg_control;
	socklen_t msg_controllen;
	int msg_flags;
};

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 28
#define SOCK_STREAM 1
#define SOCK_CLOEXEC 0x10000000
#define SOCK_NONBLOCK 0x20000000

#define SOL_SOCKET 0xffff
#define SO_REUSEADDR 0x0004
#define SO_REUSEPORT 0x0200
#define SO_NOSIGPIPE 0x0800
#define SO_ERROR 0x1007

#define MSG_DONTWAIT 0x00000080
#define MSG_NOSIGNAL 0x00020000

int socket(int domain, int type, int protocol);
int bind(int s, const struct sockaddr *addr, socklen_t addrlen);
int listen(int s, int backlog);
int accept4(int s, struct sockaddr *addr, socklen_t *addrlen, int flags);
int connect(int s, const struct sockaddr *name, socklen_t namelen);
int getsockname(int s, struct sockaddr *name, socklen_t *namelen);
int getsockopt(int s, int level, int optname, void *optval, socklen_t *optlen);
int setsockopt(int s, int level, int optname, const void *optval, socklen_t optlen);
ssize_t send(int s, const void *msg, size_t len, int flags);
ssize_t sendmsg(int s, const struct msghdr *msg, int flags);

#endif
