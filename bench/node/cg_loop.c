/* A C loop for counting whole session runs with callgrind (python -m linattn.ort_overhead
 * --loop KIND --cg-loop LIB): Python enters it through ctypes, so `valgrind --tool=callgrind
 * --toggle-collect=ffi_call` collects the n runs of fn (and the few other ctypes calls, a few
 * thousand instructions in all), whatever Python's start-up costs, which vary from run to run
 * by more than a thousand session runs. (Toggling on linattn_cg_loop itself collected nothing
 * with valgrind 3.19: libffi enters it in a way callgrind does not see as a call.)
 *     gcc -O1 -shared -fPIC -o libcgloop.so bench/node/cg_loop.c */
void linattn_cg_loop(void (*fn)(void), long n);

void linattn_cg_loop(void (*fn)(void), long n) {
  for (long i = 0; i < n; i++) fn();
}
