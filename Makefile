# libsarco. `make` builds the libraries and the CLI, `make test` builds and runs every test,
# `make test-asan` runs the C tests under ASan+UBSan, `make install PREFIX=...` installs.
# Every source file under lib/<room>/ is picked up; add files, not rules.

PREFIX ?= /usr/local
CC ?= gcc
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
PYTHON ?= python3

VERSION := $(shell sed -n 's/^\#define SARCO_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' include/sarco/sarco.h | paste -sd.)
SOMAJOR := $(firstword $(subst ., ,$(VERSION)))

BUILD ?= build
OPT ?= -O2
SAN ?=
WARN := -Wall -Wextra -Werror
CFLAGS_ALL := -std=c11 $(OPT) -g -fPIC -fvisibility=hidden -fopenmp $(WARN) $(SAN) -D_GNU_SOURCE \
              -Iinclude -I. -I/usr/include/nifti $(CFLAGS)
# GDCM (DICOM, lib/io/dicom_gdcm.cpp, the one C++ file outside CUDA) is linked directly: docs/io.md "DICOM".
GDCM_INC ?= $(firstword $(wildcard /usr/include/gdcm-3.*))
GDCM_LIBS := -lgdcmMSFF -lgdcmDSED -lgdcmCommon -lstdc++
CXX ?= g++
CXXFLAGS_ALL := -std=c++17 $(OPT) -g -fPIC -fvisibility=hidden -fvisibility-inlines-hidden $(WARN) $(SAN) -D_GNU_SOURCE \
                -Iinclude -I. -isystem $(GDCM_INC) $(CXXFLAGS)
LIBS := -ldnnl -lnifti2 -lznz -lz -lpng -ljpeg -ljansson $(GDCM_LIBS) -ldl -lm -fopenmp
LDFLAGS_ALL := $(SAN) $(LDFLAGS)

LIB_SRC := $(filter-out lib/cuda/%,$(wildcard lib/*/*.c))
LIB_CXX_SRC := $(wildcard lib/io/*.cpp)
# The diagnosis rule sets (rules/*.json) are compiled in as data (docs/clinical.md): adding a table
# is adding a file there.
RULES := $(sort $(wildcard rules/*.json))
RULES_C := $(BUILD)/gen/rules_builtin.c
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(LIB_CXX_SRC:%.cpp=$(BUILD)/%.o) $(RULES_C:.c=.o)
DEPS := $(LIB_OBJ:.o=.d)

SO := lib/libsarco.so
SO_REAL := lib/libsarco.so.$(VERSION)
ARCHIVE := lib/libsarco.a
ifeq ($(BUILD),build)
OUT_SO := $(SO_REAL)
OUT_A := $(ARCHIVE)
else
OUT_SO := $(BUILD)/libsarco.so.$(VERSION)
OUT_A := $(BUILD)/libsarco.a
endif

CLI := $(BUILD)/sarco
TEST_SRC := $(wildcard test/test_*.c)
TEST_BIN := $(TEST_SRC:test/%.c=$(BUILD)/test/%)

.PHONY: all lib cuda test test-c test-py test-asan setup install clean demo demo-us demo-l3 bench
all: lib cuda $(CLI)

lib: $(OUT_SO) $(OUT_A)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(RULES_C): $(RULES) tools/embed_rules.sh
	@mkdir -p $(dir $@)
	tools/embed_rules.sh $@ $(RULES)

$(RULES_C:.c=.o): $(RULES_C)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS_ALL) -MMD -MP -c $< -o $@

# The version script keeps GDCM's inline and template code (default visibility in its headers) inside.
$(OUT_SO): $(LIB_OBJ) tools/libsarco.map
	$(CC) -shared -Wl,-soname,libsarco.so.$(SOMAJOR) -Wl,--no-undefined -Wl,--version-script=tools/libsarco.map \
	    $(LDFLAGS_ALL) -o $@ $(LIB_OBJ) $(LIBS)
ifeq ($(BUILD),build)
	ln -sf libsarco.so.$(VERSION) lib/libsarco.so.$(SOMAJOR)
	ln -sf libsarco.so.$(VERSION) $(SO)
endif

$(OUT_A): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(CLI): $(wildcard examples/sarco/*.c examples/sarco/*.h) $(OUT_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $(filter %.c,$^) $(OUT_A) $(LIBS) $(LDFLAGS_ALL)

# Tests link the static archive so they can reach internal (hidden) functions too.
$(BUILD)/test/%: test/%.c $(OUT_A) $(wildcard test/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Wno-unused-parameter -o $@ $< $(OUT_A) $(LIBS) -lcmocka $(LDFLAGS_ALL)

# Benchmarks: every bench/*.c into $(BUILD)/bench/, linked like the tests (static archive).
bench: $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))

$(BUILD)/bench/%: bench/%.c $(OUT_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(OUT_A) $(LIBS) $(LDFLAGS_ALL)

include mk/cuda.mk

setup:
	@tools/setup.sh

test: setup
	$(MAKE) all
	$(MAKE) test-c test-py

# The README's main job: a held-out synthetic thigh CT through `sarco segment` with the demo model,
# volumes measured versus true and Dice per muscle (tools/demo.py, docs/demo.md).
demo: setup
	$(MAKE) all
	@PYTHONPATH=$(CURDIR)/python SARCO_LIBRARY=$(CURDIR)/$(OUT_SO) $(PYTHON) tools/demo.py --cli $(CLI) --out $(BUILD)/demo

# Ultrasound measures on a held-out rectus femoris phantom: true vs measured CSA and MT. Measurement
# only: the phantom's own mask is measured, not a segmentation (tools/demo_us.py).
demo-us: setup
	$(MAKE) all
	@PYTHONPATH=$(CURDIR)/python SARCO_LIBRARY=$(CURDIR)/$(OUT_SO) $(PYTHON) tools/demo_us.py --cli $(CLI) --out $(BUILD)/demo-us

# The L3 demo: a held-out synthetic L3 CT through `sarco l3` with the demo 2-D model, true versus
# measured SMA, SAT, VAT and Dice (tools/demo_l3.py, docs/clinical.md).
demo-l3: setup
	$(MAKE) all
	@PYTHONPATH=$(CURDIR)/python SARCO_LIBRARY=$(CURDIR)/$(OUT_SO) $(PYTHON) tools/demo_l3.py --cli $(CLI) --out $(BUILD)/demo_l3

# The public header compiles alone as C99/C11/C++11/C++17; the .so exports only sarco_* and links no CUDA.
.PHONY: test-header
test-header: lib
	@tools/check_header.sh include && tools/check_exports.sh $(OUT_SO) include/sarco/sarco.h

# Tests link the static archive, so point the CUDA loader at the plugin explicitly.
test-c: $(TEST_BIN) lib cuda
	@$(if $(wildcard $(CUDA_SO)),SARCO_CUDA_LIBRARY=$(CURDIR)/$(CUDA_SO)) tools/run_tests.sh $(BUILD)/test $(TEST_BIN); rc=$$?; $(MAKE) --no-print-directory test-header || rc=1; exit $$rc

test-py: lib $(CLI)
	@SARCO_LIBRARY=$(CURDIR)/$(SO) SARCO_CLI=$(CURDIR)/$(CLI) PYTHONPATH=$(CURDIR)/python $(PYTHON) -m unittest discover -s test/python -t test/python -v

# C tests once more under AddressSanitizer + UndefinedBehaviorSanitizer; any report fails.
test-asan: setup
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	    build-asan/sarco $(TEST_SRC:test/%.c=build-asan/test/%)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    LSAN_OPTIONS=suppressions=$(CURDIR)/test/fuzz/lsan.supp \
	    tools/run_tests.sh build-asan/test $(TEST_SRC:test/%.c=build-asan/test/%)

# libFuzzer on the DICOM reader (test/fuzz/fuzz_dicom.c): the library rebuilt with clang, ASan and
# UBSan in build-fuzz/, seeds from test/data/dicom, FUZZ_SECONDS of fuzzing (default 120). Needs
# Debian's clang and libclang-rt-dev (libFuzzer). Crashes land in build-fuzz/crashes/.
FUZZ_SECONDS ?= 120
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
.PHONY: fuzz-dicom
fuzz-dicom:
	$(MAKE) BUILD=build-fuzz CC=clang CXX=clang++ OPT="-O1 -g" CFLAGS=-Wno-pass-failed SAN="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" \
	    build-fuzz/libsarco.a
	clang -std=c11 -O1 -g $(WARN) $(FUZZ_SAN) -fsanitize=fuzzer -Iinclude -c -o build-fuzz/fuzz_dicom.o test/fuzz/fuzz_dicom.c
	clang++ $(FUZZ_SAN) -fsanitize=fuzzer -o build-fuzz/fuzz_dicom build-fuzz/fuzz_dicom.o build-fuzz/libsarco.a $(LIBS)
	@mkdir -p build-fuzz/corpus build-fuzz/crashes
	find test/data/dicom -type f \( -name '*.dcm' -o -name 'IM*' \) -size -64k -exec cp {} build-fuzz/corpus/ \; 2>/dev/null || true
	ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=64 LSAN_OPTIONS=suppressions=test/fuzz/lsan.supp build-fuzz/fuzz_dicom -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
	    -rss_limit_mb=2048 -artifact_prefix=build-fuzz/crashes/ build-fuzz/corpus

install: lib
	install -d $(DESTDIR)$(PREFIX)/include/sarco $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/sarco/sarco.h $(DESTDIR)$(PREFIX)/include/sarco/
	install -d $(DESTDIR)$(PREFIX)/share/sarco/rules
	install -m 644 $(RULES) $(DESTDIR)$(PREFIX)/share/sarco/rules/
	install -m 755 $(SO_REAL) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libsarco.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libsarco.so.$(SOMAJOR)
	ln -sf libsarco.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libsarco.so
	install -m 644 $(ARCHIVE) $(DESTDIR)$(PREFIX)/lib/
	if [ -f $(CUDA_SO) ]; then install -m 755 $(CUDA_SO) $(DESTDIR)$(PREFIX)/lib/; fi
	if [ -f $(CUDA12_SO) ]; then install -m 755 $(CUDA12_SO) $(DESTDIR)$(PREFIX)/lib/; fi
	if [ -f $(CLI) ]; then install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/; fi
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' tools/sarco.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/sarco.pc

clean:
	rm -rf build build-asan build-fuzz lib/libsarco.so* lib/libsarco.a lib/libsarco_cuda.so

-include $(DEPS)
