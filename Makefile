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

.PHONY: deb run build test test-asan test-tsan bench deps clean fuzz-smoke kqueue-check libkqueue

# libkqueue (BSD licence), for running netpoll's kqueue backend on Linux:
# built from the copy beside the tree (CI: ../shared/third_party/libkqueue)
# into a cache outside it, keyed by a hash of the source files and of the
# recipe below, so a clone reuses it and a changed source gets a new one.
# Without the copy the kqueue runs are skipped (and say so); the sanitizer
# builds then configure with GEECACHE_LIBKQUEUE=OFF.
LIBKQUEUE_SRC ?= $(CURDIR)/../shared/third_party/libkqueue
LIBKQUEUE_RECIPE := -DCMAKE_BUILD_TYPE=RelWithDebInfo -DENABLE_TESTING=OFF -DCMAKE_INSTALL_LIBDIR=lib
ifneq ($(wildcard $(LIBKQUEUE_SRC)/CMakeLists.txt),)
LIBKQUEUE_HASH := $(shell cd $(LIBKQUEUE_SRC) && \
  { find . -type f ! -path './.git/*' | LC_ALL=C sort | xargs -d '\n' sha256sum; \
    echo '$(LIBKQUEUE_RECIPE)'; } | sha256sum | cut -c1-16)
LIBKQUEUE_PREFIX := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/geecache/libkqueue-$(LIBKQUEUE_HASH)
# For the sanitizer builds' configure step: the option, and where pkg-config
# finds libkqueue.pc.
KQ_ENV   := PKG_CONFIG_PATH=$(LIBKQUEUE_PREFIX)/lib/pkgconfig$${PKG_CONFIG_PATH:+:$$PKG_CONFIG_PATH}
KQ_FLAGS := -DGEECACHE_LIBKQUEUE=ON
else
KQ_ENV   :=
KQ_FLAGS := -DGEECACHE_LIBKQUEUE=OFF
endif

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

# Builds and installs libkqueue into LIBKQUEUE_PREFIX once: staged with
# DESTDIR and moved into place whole, so a present .pc file means a
# finished install. A no-op, with the reason, without the source.
libkqueue: deps
ifneq ($(LIBKQUEUE_PREFIX),)
	@if [ -f "$(LIBKQUEUE_PREFIX)/lib/pkgconfig/libkqueue.pc" ]; then \
	  echo "libkqueue: cached in $(LIBKQUEUE_PREFIX)"; \
	else \
	  echo "libkqueue: building $(LIBKQUEUE_SRC) into $(LIBKQUEUE_PREFIX)"; \
	  tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  { $(CMAKE) -S "$(LIBKQUEUE_SRC)" -B "$$tmp/b" $(LIBKQUEUE_RECIPE) \
	      -DCMAKE_INSTALL_PREFIX="$(LIBKQUEUE_PREFIX)" && \
	    $(CMAKE) --build "$$tmp/b" -j $(JOBS) && \
	    DESTDIR="$$tmp/stage" $(CMAKE) --install "$$tmp/b"; } >"$$tmp/log" 2>&1 || \
	  { cat "$$tmp/log"; exit 1; }; \
	  mkdir -p "$(dir $(LIBKQUEUE_PREFIX))" && \
	  mv "$$tmp/stage$(LIBKQUEUE_PREFIX)" "$(LIBKQUEUE_PREFIX)"; \
	fi
else
	@echo "libkqueue: skipped: no source at $(LIBKQUEUE_SRC) (the kqueue backend is not built or tested)"
endif

# Debug + ASan + UBSan: every test.
test-asan: deps libkqueue
	$(KQ_ENV) $(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DGEECACHE_SANITIZE=address \
	  -DGEECACHE_WERROR=ON -DGEECACHE_BENCH=OFF $(KQ_FLAGS)
	$(CMAKE) --build build-asan -j $(JOBS)
	cd build-asan && $(CTEST) --output-on-failure -j $(JOBS)

# TSan: every test (the multi-thread ones are what it is for). The
# suppressions name libkqueue's own functions only (see the file).
test-tsan: deps libkqueue
	$(KQ_ENV) $(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DGEECACHE_SANITIZE=thread \
	  -DGEECACHE_WERROR=ON -DGEECACHE_BENCH=OFF $(KQ_FLAGS)
	$(CMAKE) --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tests/netpoll/libkqueue.tsan.supp" \
	  $(CTEST) --output-on-failure -j $(JOBS)

# Fuzz smoke runs (short, fixed run counts), when fuzz targets exist.
fuzz-smoke: deps
	@if [ -x tests/fuzz/smoke.sh ]; then tests/fuzz/smoke.sh; else echo "no fuzz targets yet"; fi

# The native (FreeBSD) kqueue build cannot run here (the suites run kqueue
# through libkqueue instead): compile every netpoll file a FreeBSD build
# uses for FreeBSD (clang, header shim in tests/kqueue_shim) so that it
# does not rot.
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
