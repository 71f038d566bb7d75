#!/usr/bin/env bash
# usage: install_test.sh TREE_DIR THIS_DIR
set -euo pipefail
tree=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake -S "$tree" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DGEECACHE_TESTS=OFF \
      -DGEECACHE_BENCH=OFF >/dev/null
cmake --build "$tmp/build" -j "$(nproc)" --target geecache geecache_static >/dev/null
cmake --install "$tmp/build" --prefix "$tmp/prefix" --component runtime >/dev/null
pc=$(find "$tmp/prefix" -name geecache.pc)
export PKG_CONFIG_PATH=$(dirname "$pc")
# pkg-config, shared library
cc -std=c11 -Wall -Werror -D_GNU_SOURCE "$src/consumer.c" -o "$tmp/consumer" \
   $(pkg-config --cflags --libs geecache)
LD_LIBRARY_PATH=$(dirname "$(dirname "$pc")") "$tmp/consumer"
# pkg-config, static library
cc -std=c11 -Wall -Werror -D_GNU_SOURCE "$src/consumer.c" -o "$tmp/consumer_static" \
   $(pkg-config --cflags geecache) "$(dirname "$(dirname "$pc")")/libgeecache.a" \
   $(pkg-config --libs-only-other --static geecache) -luring -lpthread
"$tmp/consumer_static"
# the public headers compile as C++
printf '#include <bufpool/bufpool.h>\n#include <netpoll/netpoll.h>\nint main(){return 0;}\n' > "$tmp/hdr.cc"
c++ -std=c++17 -Wall -Werror $(pkg-config --cflags geecache) -c "$tmp/hdr.cc" -o "$tmp/hdr.o"
# CMake package config
mkdir -p "$tmp/cm"
cat > "$tmp/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.20)
project(consumer C)
find_package(geecache REQUIRED)
add_executable(consumer $src/consumer.c)
target_compile_definitions(consumer PRIVATE _GNU_SOURCE)
target_link_libraries(consumer PRIVATE geecache::geecache_static)
CM
cmake -S "$tmp/cm" -B "$tmp/cm/b" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cm/b" >/dev/null
"$tmp/cm/b/consumer"
echo "install test: ok"
