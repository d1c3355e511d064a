# The CUDA backend: libsarco_cuda.so, built whenever nvcc is found; libsarco.so dlopens it, so
# libsarco.so itself never links CUDA. lib/libsarco_cuda.so for BUILD=build, $(BUILD)/ otherwise.
# SASS for sm_80 (A100, and 8.x by binary compatibility) and sm_90 (H100/H200), PTX for compute_90
# so newer GPUs JIT it. Warnings are errors on both the host and the device side.
ifeq ($(BUILD),build)
CUDA_SO := lib/libsarco_cuda.so
else
CUDA_SO := $(BUILD)/libsarco_cuda.so
endif

ifneq ($(NVCC),)
CUDA_HOME ?= $(patsubst %/bin/,%,$(dir $(realpath $(NVCC))))
CUDA_LIBDIR ?= $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib))
CUDA_GENCODE := -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
                -gencode arch=compute_90,code=compute_90
NVCCFLAGS_ALL := -std=c++20 $(OPT) -g -lineinfo $(CUDA_GENCODE) -Werror all-warnings \
                 -Xcompiler -fPIC,-fvisibility=hidden,-Wall,-Wextra,-Werror -D_GNU_SOURCE -Iinclude -I. $(NVCCFLAGS)
# C parts compiled into the plugin (it may not call libsarco's hidden functions): errors and shapes.
CUDA_CFLAGS := -std=c11 $(OPT) -g -fPIC -fvisibility=hidden $(WARN) -D_GNU_SOURCE -Iinclude -I.
CUDA_CU_SRC := $(wildcard lib/cuda/*.cu kernels/*.cu)
CUDA_C_SRC := lib/core/error.c lib/ops/shape.c
CUDA_OBJ := $(CUDA_CU_SRC:%.cu=$(BUILD)/cuda/%.o) $(CUDA_C_SRC:%.c=$(BUILD)/cuda/%.o)

cuda: $(CUDA_SO)

$(BUILD)/cuda/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS_ALL) -MMD -MP -MF $(@:.o=.d) -c $< -o $@

$(BUILD)/cuda/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CUDA_CFLAGS) -MMD -MP -c $< -o $@

$(CUDA_SO): $(CUDA_OBJ) lib/cuda/exports.map
	$(NVCC) -shared --cudart static -o $@ $(CUDA_OBJ) -L$(CUDA_LIBDIR) -lcudnn -lcublas \
	    -Xlinker --version-script=lib/cuda/exports.map -Xlinker --no-undefined -Xlinker -rpath=$(CUDA_LIBDIR)

-include $(CUDA_OBJ:.o=.d)

# bench/bench_cuda.cu: every op and a whole UNETR forward on the GPU (SKIP line without one).
CUDA_BENCH := $(BUILD)/bench/bench_cuda
.PHONY: bench-cuda
bench-cuda: $(CUDA_BENCH) $(CUDA_SO)
	$(CUDA_BENCH)

$(CUDA_BENCH): bench/bench_cuda.cu $(OUT_A)
	@mkdir -p $(dir $@)
	$(NVCC) -std=c++20 $(OPT) -g -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror,-fopenmp -D_GNU_SOURCE \
	    -Iinclude -I. -o $@ $< $(OUT_A) $(filter-out -fopenmp,$(LIBS)) -lgomp
else
cuda:
	@echo "nvcc not found: skipping libsarco_cuda.so"
bench-cuda:
	@echo "SKIP bench_cuda: nvcc not found"
endif
