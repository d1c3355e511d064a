# The CUDA backend: libsarco_cuda.so, built whenever nvcc is found; libsarco.so dlopens it, so
# libsarco.so itself never links CUDA. lib/libsarco_cuda.so for BUILD=build, $(BUILD)/ otherwise.
# SASS for sm_80 (A100, and 8.x by binary compatibility) and sm_90 (H100/H200), PTX for compute_90
# so newer GPUs JIT it. Warnings are errors on both the host and the device side.
ifeq ($(BUILD),build)
CUDA_SO := lib/libsarco_cuda.so
CUDA12_SO := lib/libsarco_cuda12.so
else
CUDA_SO := $(BUILD)/libsarco_cuda.so
CUDA12_SO := $(BUILD)/libsarco_cuda12.so
endif

# The plug-in ABI guard (lib/ops/ops.h, sarco_cuda_abi_info): a hash of the headers that lay out what
# libsarco and the plug-in share; the loader and the plug-in must carry the same one. The loader also
# learns the libdir it will be installed to (a PREFIX change rebuilds it, so `make install PREFIX=...`
# installs a library that looks for the plug-in there).
SARCO_BUILD_ID := $(shell cat include/sarco/sarco.h lib/core/core.h lib/ops/ops.h | sha1sum | cut -c1-16)
SARCO_ABI_FLAGS := -DSARCO_BUILD_ID='"$(SARCO_BUILD_ID)"'
LIBDIR_STAMP := $(BUILD)/libdir.txt
$(shell mkdir -p $(BUILD) && { [ "$$(cat $(LIBDIR_STAMP) 2>/dev/null)" = "$(PREFIX)/lib" ] || echo "$(PREFIX)/lib" > $(LIBDIR_STAMP); })
$(BUILD)/lib/ops/cuda_loader.o: CFLAGS_ALL += $(SARCO_ABI_FLAGS) -DSARCO_LIBDIR='"$(PREFIX)/lib"'
$(BUILD)/lib/ops/cuda_loader.o: $(LIBDIR_STAMP)
# test_cuda_plugin builds small programs against the library the way a user would
$(BUILD)/test/test_cuda_plugin: CFLAGS_ALL += $(SARCO_ABI_FLAGS) -DSARCO_TEST_CC='"$(CC) $(SAN)"' \
    -DSARCO_TEST_LIBS='"$(LIBS)"' -DSARCO_TEST_ARCHIVE='"$(OUT_A)"' -DSARCO_TEST_CLI='"$(CLI)"'
$(BUILD)/test/test_cuda_plugin: $(CLI)

ifneq ($(NVCC),)
CUDA_HOME ?= $(patsubst %/bin/,%,$(dir $(realpath $(NVCC))))
CUDA_LIBDIR ?= $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib))
CUDA_GENCODE := -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
                -gencode arch=compute_90,code=compute_90
NVCCFLAGS_ALL := -std=c++20 $(OPT) -g -lineinfo $(CUDA_GENCODE) -Werror all-warnings \
                 -Xcompiler -fPIC,-fvisibility=hidden,-Wall,-Wextra,-Werror -D_GNU_SOURCE -Iinclude -I. \
                 $(SARCO_ABI_FLAGS) $(NVCCFLAGS)
# C parts compiled into the plugin (it may not call libsarco's hidden functions): errors and shapes.
CUDA_CFLAGS := -std=c11 $(OPT) -g -fPIC -fvisibility=hidden $(WARN) -D_GNU_SOURCE -Iinclude -I. $(SARCO_ABI_FLAGS)
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
endif

# ---- the CUDA 12 plug-in (docs/cuda.md, "Drivers"): libsarco_cuda12.so for drivers 525-570 ----------
# cuDNN, cuBLAS and cudart come from PyPI's NVIDIA wheels, installed under $(CU12_DIR) by `make
# cuda12-deps` (about 1.4 GB, once). The compiler cannot: nvidia-cuda-nvcc-cu12 carries ptxas, libnvvm,
# libdevice and the crt headers but not the nvcc driver, cicc, cudafe++, fatbinary or nvlink, so CUDA C++
# with <<<>>> launches does not compile from the wheels alone. Give a CUDA 12.x toolkit's nvcc as NVCC12
# (make cuda12 NVCC12=/usr/local/cuda-12.9/bin/nvcc); without one the target says so and fails.
CU12_DIR ?= $(BUILD)/cu12
CU12_WHEELS := "nvidia-cuda-nvcc-cu12==12.9.*" "nvidia-cuda-runtime-cu12==12.9.*" "nvidia-cublas-cu12==12.9.*" \
               "nvidia-cudnn-cu12==9.*"
CU12_NV := $(CU12_DIR)/nvidia
NVCC12 ?= $(firstword $(wildcard $(CU12_NV)/cuda_nvcc/bin/nvcc))
.PHONY: cuda12 cuda12-deps
cuda12-deps: $(CU12_DIR)/.installed
$(CU12_DIR)/.installed:
	$(PYTHON) -m pip install --no-deps --target $(CU12_DIR) $(CU12_WHEELS)
	touch $@

CUDA12_OBJ := $(CUDA_CU_SRC:%.cu=$(BUILD)/cuda12/%.o) $(CUDA_C_SRC:%.c=$(BUILD)/cuda/%.o)
CUDA12_INC := -I$(CU12_NV)/cuda_runtime/include -I$(CU12_NV)/cudnn/include -I$(CU12_NV)/cublas/include
ifneq ($(NVCC12),)
cuda12: cuda12-deps $(CUDA12_SO)
$(BUILD)/cuda12/%.o: %.cu $(CU12_DIR)/.installed
	@mkdir -p $(dir $@)
	$(NVCC12) $(NVCCFLAGS_ALL) $(CUDA12_INC) -MMD -MP -MF $(@:.o=.d) -c $< -o $@
$(CUDA12_SO): $(CUDA12_OBJ) lib/cuda/exports.map
	$(NVCC12) -shared --cudart static -o $@ $(CUDA12_OBJ) -L$(CU12_NV)/cuda_runtime/lib -L$(CU12_NV)/cudnn/lib \
	    -L$(CU12_NV)/cublas/lib -l:libcudnn.so.9 -l:libcublas.so.12 -l:libcublasLt.so.12 \
	    -Xlinker --version-script=lib/cuda/exports.map -Xlinker --no-undefined \
	    -Xlinker -rpath=$(abspath $(CU12_NV))/cudnn/lib:$(abspath $(CU12_NV))/cublas/lib
else
cuda12: cuda12-deps
	@echo "cuda12: no CUDA 12 nvcc: $(CU12_NV)/cuda_nvcc (PyPI's nvidia-cuda-nvcc-cu12) has ptxas and libnvvm but"
	@echo "  no nvcc, cicc, cudafe++, fatbinary or nvlink. Install a CUDA 12.x toolkit and run"
	@echo "  make cuda12 NVCC12=/usr/local/cuda-12.9/bin/nvcc   (docs/cuda.md, Drivers)"
	@exit 2
endif

ifeq ($(NVCC),)
cuda:
	@echo "nvcc not found: skipping libsarco_cuda.so"
bench-cuda:
	@echo "SKIP bench_cuda: nvcc not found"
endif
