/*
 * Loads liblinattn_ort.so as an older ONNX Runtime would, and runs a model through it.
 *
 * usage: ort_older_runtime PLUGIN MODEL API_VERSION
 *
 * RegisterCustomOps gets an OrtApiBase that says it is ONNX Runtime 1.<API_VERSION> and has no
 * table above that version. The tables it hands out are copies of the real runtime's, in which
 * every entry of C API version 24 and later is cleared (a call through one crashes) and
 * CustomOpDomain_Add records the version of each op added. The model (float32 inputs of fixed
 * shapes) then runs on the real runtime with element i of input j ((7 i + 3 j) mod 11 - 5) / 8 (exact
 * in float, so any program can make the same inputs), and every
 * output element is printed as "name index %a". Prints "op versions: N" (the versions of every
 * op added, all equal) or "register failed: message" and exits 0; 1 on other errors.
 */
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxruntime_c_api.h"

static const OrtApi* real;
static OrtApi fake_table;
static uint32_t fake_version;
static char fake_version_string[32];
static uint32_t op_version_seen;
static int op_versions_differ;

static OrtStatus* ORT_API_CALL recording_domain_add(OrtCustomOpDomain* domain, const OrtCustomOp* op) {
  if (op_version_seen && op->version != op_version_seen) op_versions_differ = 1;
  op_version_seen = op->version;
  return real->CustomOpDomain_Add(domain, op);
}

static const OrtApi* ORT_API_CALL fake_get_api(uint32_t version) {
  return version >= 1 && version <= fake_version ? &fake_table : NULL;
}

static const char* ORT_API_CALL fake_get_version_string(void) { return fake_version_string; }

static int check(OrtStatus* st, const char* what) {
  if (!st) return 0;
  fprintf(stderr, "%s: %s\n", what, real->GetErrorMessage(st));
  real->ReleaseStatus(st);
  return 1;
}

/* One float32 input tensor of the session's fixed shape, element i ((7 i + 3 index) mod 11 - 5) / 8. */
static int make_input(OrtSession* session, size_t index, OrtValue** value, float** data) {
  OrtTypeInfo* ti = NULL;
  const OrtTensorTypeAndShapeInfo* tsi = NULL;
  size_t rank = 0;
  int64_t dims[8];
  if (check(real->SessionGetInputTypeInfo(session, index, &ti), "input type") ||
      check(real->CastTypeInfoToTensorInfo(ti, &tsi), "input tensor") ||
      check(real->GetDimensionsCount(tsi, &rank), "input rank") || rank > 8 ||
      check(real->GetDimensions(tsi, dims, rank), "input dims"))
    return 1;
  real->ReleaseTypeInfo(ti);
  size_t n = 1;
  for (size_t i = 0; i < rank; i++) n *= (size_t)dims[i];
  *data = (float*)malloc(n * sizeof(float) + 1);
  for (size_t i = 0; i < n; i++) (*data)[i] = (float)((long)((7 * i + 3 * index) % 11) - 5) / 8.0f;
  OrtMemoryInfo* mem = NULL;
  if (check(real->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &mem), "memory info")) return 1;
  OrtStatus* st = real->CreateTensorWithDataAsOrtValue(mem, *data, n * sizeof(float), dims, rank,
                                                       ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, value);
  real->ReleaseMemoryInfo(mem);
  return check(st, "input tensor value");
}

static int run_model(OrtSession* session, OrtAllocator* alloc) {
  size_t n_in = 0, n_out = 0;
  if (check(real->SessionGetInputCount(session, &n_in), "inputs") ||
      check(real->SessionGetOutputCount(session, &n_out), "outputs") || n_in > 8 || n_out > 8)
    return 1;
  char* in_names[8];
  char* out_names[8];
  OrtValue* ins[8] = {0};
  OrtValue* outs[8] = {0};
  float* in_data[8] = {0};
  for (size_t i = 0; i < n_in; i++)
    if (check(real->SessionGetInputName(session, i, alloc, &in_names[i]), "input name") ||
        make_input(session, i, &ins[i], &in_data[i]))
      return 1;
  for (size_t i = 0; i < n_out; i++)
    if (check(real->SessionGetOutputName(session, i, alloc, &out_names[i]), "output name")) return 1;
  if (check(real->Run(session, NULL, (const char* const*)in_names, (const OrtValue* const*)ins, n_in,
                      (const char* const*)out_names, n_out, outs),
            "run"))
    return 1;
  for (size_t o = 0; o < n_out; o++) {
    OrtTensorTypeAndShapeInfo* info = NULL;
    size_t count = 0;
    float* data = NULL;
    if (check(real->GetTensorTypeAndShape(outs[o], &info), "output shape") ||
        check(real->GetTensorShapeElementCount(info, &count), "output size") ||
        check(real->GetTensorMutableData(outs[o], (void**)&data), "output data"))
      return 1;
    real->ReleaseTensorTypeAndShapeInfo(info);
    for (size_t i = 0; i < count; i++) printf("%s %zu %a\n", out_names[o], i, (double)data[i]);
    real->ReleaseValue(outs[o]);
  }
  for (size_t i = 0; i < n_in; i++) {
    real->ReleaseValue(ins[i]);
    free(in_data[i]);
    alloc->Free(alloc, in_names[i]);
  }
  for (size_t i = 0; i < n_out; i++) alloc->Free(alloc, out_names[i]);
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s PLUGIN MODEL API_VERSION\n", argv[0]);
    return 1;
  }
  real = OrtGetApiBase()->GetApi(ORT_API_VERSION);
  if (!real) return 1;
  fake_version = (uint32_t)strtoul(argv[3], NULL, 10);
  snprintf(fake_version_string, sizeof fake_version_string, "1.%u.0", fake_version);
  fake_table = *real;
  fake_table.CustomOpDomain_Add = recording_domain_add;
#if ORT_API_VERSION >= 24
  if (fake_version < 24) {
    /* Entries of version 24 on start with TensorTypeAndShape_HasShape (the first one 1.24 added). */
    const size_t from = offsetof(OrtApi, TensorTypeAndShape_HasShape);
    memset((char*)&fake_table + from, 0, sizeof fake_table - from);
  }
#endif
  static const OrtApiBase fake_base = {fake_get_api, fake_get_version_string};

  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 1;
  }
  typedef OrtStatus* (*register_fn)(OrtSessionOptions*, const OrtApiBase*);
  register_fn reg;
  *(void**)&reg = dlsym(lib, "RegisterCustomOps");
  OrtEnv* env = NULL;
  OrtSessionOptions* so = NULL;
  if (!reg || check(real->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "older", &env), "env") ||
      check(real->CreateSessionOptions(&so), "options") || check(real->SetIntraOpNumThreads(so, 1), "threads"))
    return 1;
  OrtStatus* st = reg(so, &fake_base);
  if (st) {
    printf("register failed: %s\n", real->GetErrorMessage(st));
    real->ReleaseStatus(st);
    return 0;
  }
  if (op_versions_differ || !op_version_seen) {
    fprintf(stderr, "op versions differ or no op added\n");
    return 1;
  }
  printf("op versions: %u\n", op_version_seen);
  OrtSession* session = NULL;
  OrtAllocator* alloc = NULL;
  if (check(real->CreateSession(env, argv[2], so, &session), "session") ||
      check(real->GetAllocatorWithDefaultOptions(&alloc), "allocator") || run_model(session, alloc))
    return 1;
  real->ReleaseSession(session);
  real->ReleaseSessionOptions(so);
  real->ReleaseEnv(env);
  return 0;
}
