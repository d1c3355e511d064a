# The CUDA backend: lib/libsarco_cuda.so, built whenever nvcc is found. libsarco.so dlopens it.
CUDA_SO := lib/libsarco_cuda.so
ifneq ($(NVCC),)
cuda: $(CUDA_SO)
else
cuda:
	@echo "nvcc not found: skipping libsarco_cuda.so"
endif
$(CUDA_SO):
	@echo "CUDA backend not written yet"
