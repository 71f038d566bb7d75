#!/usr/bin/python3
"""ttl_race.py PORT [TRIES] [GAP_MS]: how often a key set with a TTL of 1
is gone when touched GAP_MS later (text protocol). With a one-second
clock, the expected share is about GAP_MS / 1000 for memcached and
geecached alike (docs/protocol.md, "memcached's test suite")."""
import socket
import sys
import time


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    port = int(sys.argv[1])
    tries = int(sys.argv[2]) if len(sys.argv) > 2 else 600
    gap = (int(sys.argv[3]) if len(sys.argv) > 3 else 20) / 1000.0
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    gone = 0
    for _ in range(tries):
        s.sendall(b"set ttl_race 0 1 2\r\nhi\r\n")
        if f.readline() != b"STORED\r\n":
            sys.exit("set failed")
        time.sleep(gap)
        s.sendall(b"touch ttl_race 1\r\n")
        if f.readline() != b"TOUCHED\r\n":
            gone += 1
    print("port %d: gone %d of %d (TTL 1, touched %.0f ms later)" % (port, gone, tries, gap * 1000))


if __name__ == "__main__":
    main()
