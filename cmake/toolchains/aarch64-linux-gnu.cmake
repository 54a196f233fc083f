# Cross-compiles keel's core tests for aarch64 with Debian's
# g++-aarch64-linux-gnu; the test programs run under qemu-user
# (qemu-aarch64), which ctest and catch_discover_tests call through
# CMAKE_CROSSCOMPILING_EMULATOR. Target libraries come from Debian's
# multiarch packages (libfmt-dev:arm64, librapidcheck-dev:arm64).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
# The target C library is Debian's libc6:arm64 (multiarch, pulled in by the
# packages above), where qemu-user finds it without -L; with -L pointing at
# the cross toolchain's copy, a condition_variable wake-up never arrives
# under qemu 7.2.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)
# Programs (the compiler, qemu) from the host; libraries and packages for the target.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
