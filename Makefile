# GeeCache: a thin layer over CMake. The README's two commands:
#   make run    install missing build deps, build Release, run geecached
#   make test   install missing deps, build Debug+ASan+UBSan and TSan, run ctest
# and: make build (Release only), make bench (run the benchmarks).

JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE  ?= cmake
CTEST  ?= ctest
ARGS   ?=

# Debian packages the build and tests need (checked one by one with dpkg).
DEPS := cmake make gcc g++ pkg-config liburing-dev libgtest-dev libbenchmark-dev \
        clang libfuzzer-14-dev memcached libmemcached-tools python3-pylibmc nutcracker \
        libsasl2-modules \
        prometheus

.PHONY: deb run build test test-asan test-tsan bench deps clean fuzz-smoke kqueue-check

deps:
	@missing=""; for p in $(DEPS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq || true) && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing (run as root, or: sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

build/CMakeCache.txt:
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release -DGEECACHE_TESTS=OFF

build: deps build/CMakeCache.txt
	$(CMAKE) --build build -j $(JOBS)

run: build
	./build/geecached $(ARGS)

# Debug + ASan + UBSan: every test.
test-asan: deps
	$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DGEECACHE_SANITIZE=address \
	  -DGEECACHE_WERROR=ON -DGEECACHE_BENCH=OFF
	$(CMAKE) --build build-asan -j $(JOBS)
	cd build-asan && $(CTEST) --output-on-failure -j $(JOBS)

# TSan: every test (the multi-thread ones are what it is for).
test-tsan: deps
	$(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DGEECACHE_SANITIZE=thread \
	  -DGEECACHE_WERROR=ON -DGEECACHE_BENCH=OFF
	$(CMAKE) --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1 $(CTEST) --output-on-failure -j $(JOBS)

# Fuzz smoke runs (short, fixed run counts), when fuzz targets exist.
fuzz-smoke: deps
	@if [ -x tests/fuzz/smoke.sh ]; then tests/fuzz/smoke.sh; else echo "no fuzz targets yet"; fi

# The kqueue backend cannot run here: compile every netpoll file a FreeBSD
# build uses for FreeBSD (clang, header shim in tests/kqueue_shim) so that
# it does not rot.
kqueue-check: deps
	tests/kqueue_shim/check.sh

test: test-asan test-tsan fuzz-smoke kqueue-check

bench: deps
	$(CMAKE) -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DGEECACHE_TESTS=OFF
	$(CMAKE) --build build-bench -j $(JOBS)
	@for b in build-bench/bench/*/bench_*; do \
	  [ -x "$$b" ] || continue; echo "== $$b"; "$$b" $(ARGS) || exit 1; done

# A Debian package of the server (binary, man page, systemd unit and its
# /etc/default file), built Release for /usr by CPack into build-deb/.
deb: deps
	$(CMAKE) -S . -B build-deb -DCMAKE_BUILD_TYPE=Release -DGEECACHE_TESTS=OFF \
	  -DGEECACHE_BENCH=OFF -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_SYSCONFDIR=/etc
	$(CMAKE) --build build-deb -j $(JOBS) --target geecached geecached_man
	cd build-deb && cpack -G DEB
	@ls build-deb/*.deb

clean:
	rm -rf build build-deb build-asan build-tsan build-bench
