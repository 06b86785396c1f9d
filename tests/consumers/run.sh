#!/usr/bin/env bash
# Consumers of weir, as users build them (called by .ci/run):
#   1. install weir to a scratch prefix (meson setup -Dprefix=..., install);
#   2. a C program through pkg-config, linked shared and static (the
#      --static flags with libweir.a in place of -lweir; ldd must not list
#      libweir.so);
#   3. the C++ test (tests/cpp/test_cpp.cpp) through pkg-config with g++ and
#      clang++, -std=c++17 and -std=c++20, -Wall -Wextra -pedantic -Werror;
#   4. a CMake project: find_package(weir) and weir::weir, shared and
#      WEIR_USE_STATIC_LIBS=ON;
#   5. a Meson project with weir as a subproject (a link to this tree),
#      default_library=static: only the library is configured (no tests,
#      benchmarks or examples) and the program links it statically.
# Every program runs and checks its own results.
# Usage: tests/consumers/run.sh [WORKDIR]   (default: a fresh temporary one)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/weir-consumers.XXXXXX")}
mkdir -p "$work"
work=$(cd "$work" && pwd)
prefix=$work/prefix
step() { echo "consumers: $*"; }
not_linked_shared() {
    local libs
    libs=$(ldd "$1")
    if grep -q 'libweir\.so' <<<"$libs"; then
        echo "consumers: $1 links libweir.so, expected the static library" >&2
        exit 1
    fi
}

step "install to $prefix"
rm -rf "$work/build" "$prefix"
meson setup "$work/build" "$root" --prefix="$prefix" --libdir=lib --buildtype=release \
    -Dtests=disabled -Dbenchmarks=disabled >"$work/setup.log" 2>&1 ||
    { cat "$work/setup.log"; exit 1; }
ninja -C "$work/build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
meson install -C "$work/build" --no-rebuild >"$work/install.log" 2>&1 ||
    { cat "$work/install.log"; exit 1; }
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
export LD_LIBRARY_PATH=$prefix/lib
test -f "$prefix/include/weir/version.h"
if grep -q urcu "$prefix/lib/pkgconfig/weir.pc"; then
    echo "consumers: weir.pc names liburcu, which no public header uses" >&2
    exit 1
fi

step "C, pkg-config, shared"
cc -std=c11 -Wall -Wextra -Werror "$here/c/main.c" $(pkg-config --cflags --libs weir) \
    -o "$work/c_shared"
"$work/c_shared"
grep -q 'libweir\.so' <<<"$(ldd "$work/c_shared")"

step "C, pkg-config --static"
static_libs=$(pkg-config --static --libs weir | sed "s|-lweir\\b|$prefix/lib/libweir.a|")
cc -std=c11 -Wall -Wextra -Werror "$here/c/main.c" $(pkg-config --cflags weir) $static_libs \
    -o "$work/c_static"
"$work/c_static"
not_linked_shared "$work/c_static"

for cxx in g++ clang++; do
    for std in c++17 c++20; do
        step "C++, $cxx -std=$std"
        "$cxx" -std=$std -Wall -Wextra -pedantic -Werror "$root/tests/cpp/test_cpp.cpp" \
            $(pkg-config --cflags --libs weir) -o "$work/cpp_${cxx}_$std"
        "$work/cpp_${cxx}_$std" >/dev/null
    done
done

for mode in shared static; do
    step "CMake, find_package(weir), $mode"
    flag=OFF
    [ $mode = static ] && flag=ON
    rm -rf "$work/cmake-$mode"
    cmake -S "$here/cmake" -B "$work/cmake-$mode" -DCMAKE_PREFIX_PATH="$prefix" \
        -DWEIR_USE_STATIC_LIBS=$flag -DCMAKE_BUILD_TYPE=Release >"$work/cmake-$mode.log" 2>&1 ||
        { cat "$work/cmake-$mode.log"; exit 1; }
    cmake --build "$work/cmake-$mode" >>"$work/cmake-$mode.log" 2>&1 ||
        { cat "$work/cmake-$mode.log"; exit 1; }
    "$work/cmake-$mode/consumer_c"
    "$work/cmake-$mode/consumer_cpp" >/dev/null
    [ $mode = static ] && not_linked_shared "$work/cmake-$mode/consumer_c"
done

step "Meson subproject, default_library=static"
sub=$work/subproject
rm -rf "$sub"
mkdir -p "$sub/subprojects" "$sub/c"
cp "$here/subproject/meson.build" "$sub/"
cp "$here/c/main.c" "$sub/c/"
sed -i "s|'../c/main.c'|'c/main.c'|" "$sub/meson.build"
ln -s "$root" "$sub/subprojects/weir"
meson setup "$sub/build" "$sub" >"$work/sub-setup.log" 2>&1 ||
    { cat "$work/sub-setup.log"; exit 1; }
if grep -qi criterion "$work/sub-setup.log" || [ -e "$sub/build/subprojects/weir/tests" ]; then
    echo "consumers: the subproject configured its tests" >&2
    exit 1
fi
ninja -C "$sub/build" >"$work/sub-build.log" 2>&1 || { cat "$work/sub-build.log"; exit 1; }
"$sub/build/consumer"
not_linked_shared "$sub/build/consumer"
step "ok ($work)"
