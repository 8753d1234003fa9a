# Cross-compiling for AArch64 Linux with Debian's gcc-aarch64-linux-gnu (used by scripts/test-neon;
# the binaries run under qemu-aarch64 -L /usr/aarch64-linux-gnu).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Let CMake run the test binaries it builds (try_run, ctest) through qemu.
find_program(LINATTN_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(LINATTN_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${LINATTN_QEMU_AARCH64} -L /usr/aarch64-linux-gnu)
endif()
