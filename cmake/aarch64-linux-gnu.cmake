# Toolchain file: cross-compile for aarch64 Linux with Debian's
# g++-aarch64-linux-gnu, running the results under qemu-user
# (qemu-aarch64 -L /usr/aarch64-linux-gnu).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
find_program(KEEL_QEMU_AARCH64 qemu-aarch64)
if(KEEL_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${KEEL_QEMU_AARCH64};-L;/usr/aarch64-linux-gnu")
endif()
