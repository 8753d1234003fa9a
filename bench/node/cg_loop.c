/* A C loop for counting whole session runs with callgrind (python -m linattn.ort_overhead
 * --loop KIND --cg-loop LIB): `valgrind --tool=callgrind --toggle-collect=linattn_cg_loop` then
 * collects exactly the n runs of fn, whatever Python's start-up costs.
 *     gcc -O1 -shared -fPIC -o libcgloop.so bench/node/cg_loop.c */
void linattn_cg_loop(void (*fn)(void), long n);

void linattn_cg_loop(void (*fn)(void), long n) {
  for (long i = 0; i < n; i++) fn();
}
