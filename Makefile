# RetinaFace in C: `make` builds build/libretina.a and the apps, `make test` runs the Check
# suites, `make bench` runs the benchmarks. CUDA sources compile when nvcc is found (CUDA=0 turns
# that off); SAN=1 builds everything with ASan + UBSan into build-san/.

CC      ?= cc
NVCC    ?= nvcc
SAN     ?= 0
ifeq ($(origin CUDA), undefined)
  CUDA := $(if $(shell command -v $(NVCC) 2>/dev/null),1,0)
endif

ifeq ($(SAN),1)
  BUILD  ?= build-san
  OPT    := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDSAN  := -fsanitize=address,undefined
else
  BUILD  ?= build
  OPT    := -O3 -g
  LDSAN  :=
endif

# -fno-trapping-math: nothing here reads floating-point exception flags, and without it the compiler
# will not vectorise loops with float selects or floorf (rounding and results are unchanged).
# -fPIC -fvisibility=hidden: the same objects make libretina.a and libretina.so, and the shared
# library exports only the public API (RETINA_API in detection/retina.h).
CFLAGS  := -std=c11 -D_GNU_SOURCE -fno-trapping-math -Wall -Wextra -Wno-unused-parameter -pthread -I. $(OPT) -MMD -MP \
           -fPIC -fvisibility=hidden $(EXTRA_CFLAGS)
LDLIBS  := -ljpeg -lpng -lwebp -lexif -lz -lm -pthread
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm)

LIB_DIRS := tensor autograd nn nn/formats models detection
LIB_SRC  := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
LIB_ASM  := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.S))

# ONNX export (nn/formats/onnx_export.c): protobuf-c's C code generated at build time from the ONNX schema that
# Debian's libonnx-dev ships. Built when protoc-c, protobuf-c's headers and the schema are all found
# (ONNX=0 turns it off); otherwise nn/formats/onnx_export_none.c says the build has no export.
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
ifeq ($(origin ONNX), undefined)
  ONNX := $(if $(and $(shell command -v protoc-c 2>/dev/null),$(wildcard $(ONNX_PROTO)),$(wildcard /usr/include/protobuf-c/protobuf-c.h)),1,0)
endif
ifeq ($(ONNX),1)
  LIB_SRC  := $(filter-out nn/formats/onnx_export_none.c,$(LIB_SRC))
  GEN_OBJ  := $(BUILD)/obj/gen/onnx.pb-c.o
  CFLAGS_ONNX := -I$(BUILD)/gen -DHAVE_ONNX
  LDLIBS   += -lprotobuf-c
else
  LIB_SRC  := $(filter-out nn/formats/onnx_export.c,$(LIB_SRC))
  GEN_OBJ  :=
endif

# Distributed training (tensor/comm_mpi.c) on Open MPI: built when mpicc is found (MPI=0 turns it off);
# otherwise tensor/comm_none.c, one rank.
ifeq ($(origin MPI), undefined)
  MPI := $(if $(shell command -v mpicc 2>/dev/null),1,0)
endif
ifeq ($(MPI),1)
  LIB_SRC  := $(filter-out tensor/comm_none.c,$(LIB_SRC))
  CFLAGS_MPI := $(shell mpicc --showme:compile)
  LDLIBS   += $(shell mpicc --showme:link)
else
  LIB_SRC  := $(filter-out tensor/comm_mpi.c,$(LIB_SRC))
endif
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(LIB_ASM:%.S=$(BUILD)/obj/%.o) $(GEN_OBJ)

# NCCL (GPU gradient sums, cuda_kernels/nccl_comm.cu): with CUDA and MPI when nccl.h is found (NCCL=0 turns
# it off); otherwise tensor/nccl_comm_none.c.
ifeq ($(origin NCCL), undefined)
  NCCL_HOME_GUESS := $(patsubst %/bin/nvcc,%,$(shell command -v $(NVCC) 2>/dev/null))
  NCCL_INC := $(firstword $(wildcard /usr/local/include/nccl.h /usr/include/nccl.h $(NCCL_HOME_GUESS)/include/nccl.h))
  NCCL_LIB := $(firstword $(wildcard /usr/local/lib/libnccl.so /usr/lib/x86_64-linux-gnu/libnccl.so $(NCCL_HOME_GUESS)/lib64/libnccl.so))
  NCCL := $(if $(and $(filter 1,$(CUDA)),$(filter 1,$(MPI)),$(NCCL_INC),$(NCCL_LIB)),1,0)
endif
ifeq ($(NCCL),1)
  LIB_SRC  := $(filter-out tensor/nccl_comm_none.c,$(LIB_SRC))
  LIB_OBJ  := $(filter-out $(BUILD)/obj/tensor/nccl_comm_none.o,$(LIB_OBJ))
endif

ifeq ($(CUDA),1)
  CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(shell command -v $(NVCC)))
  CU_SRC   := $(filter-out $(if $(filter 1,$(NCCL)),,cuda_kernels/nccl_comm.cu),$(wildcard cuda_kernels/*.cu))
  CU_OBJ   := $(CU_SRC:%.cu=$(BUILD)/obj/%.o)
  CFLAGS   += -DHAVE_CUDA
  NVFLAGS  := -O2 -std=c++17 -I. -DHAVE_CUDA -gencode arch=compute_90,code=sm_90 \
              -gencode arch=compute_80,code=compute_80 -Xcompiler -Wall,-fPIC,-fvisibility=hidden
  LDLIBS   += -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/targets/x86_64-linux/lib $(if $(filter 1,$(NCCL)),-L$(dir $(NCCL_LIB)) -lnccl) \
              -lcublas -lcudart_static -ldl -lrt -lstdc++
else
  CU_OBJ   :=
  # the CUDA twins' stand-ins: the ops dispatch on var_on_cuda() with no #ifdef
  LIB_OBJ  += $(BUILD)/obj/cuda_kernels/cuda_ops_none.o
endif

APPS      := $(patsubst apps/%.c,$(BUILD)/%,$(wildcard apps/*.c))
TEST_SRC  := $(wildcard tests/*.c) tests/fuzz/fuzz_targets.c
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
BENCH     := $(patsubst benchmarks/%.c,$(BUILD)/bench_%,$(wildcard benchmarks/*.c))

# Rebuild everything when the flags change (CUDA on/off, SAN, EXTRA_CFLAGS).
FLAGS_STAMP := $(BUILD)/flags.stamp
$(shell mkdir -p $(BUILD); echo '$(CC) $(CFLAGS) $(NVFLAGS)' | cmp -s - $(FLAGS_STAMP) 2>/dev/null || echo '$(CC) $(CFLAGS) $(NVFLAGS)' > $(FLAGS_STAMP))

.PHONY: all test bench clean deps install fuzz
# Keep object files of apps and benchmarks (make would delete them as intermediates).
.SECONDARY:
all: $(BUILD)/libretina.a $(BUILD)/libretina.so $(APPS)

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/tensor/comm_mpi.o: tensor/comm_mpi.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CFLAGS_MPI) -c $< -o $@

# The generated ONNX schema code: its own warnings are not ours (-w).
ifeq ($(ONNX),1)
$(BUILD)/gen/onnx.pb-c.c $(BUILD)/gen/onnx.pb-c.h &: $(ONNX_PROTO)
	@mkdir -p $(BUILD)/gen
	protoc-c -I$(dir $(ONNX_PROTO)) --c_out=$(BUILD)/gen $(ONNX_PROTO)
$(BUILD)/obj/gen/onnx.pb-c.o: $(BUILD)/gen/onnx.pb-c.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CFLAGS_ONNX) -w -c $< -o $@
$(BUILD)/obj/nn/formats/onnx_export.o $(BUILD)/obj/tests/test_onnx.o: $(BUILD)/obj/%.o: %.c $(BUILD)/gen/onnx.pb-c.h $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CFLAGS_ONNX) -c $< -o $@
endif

# Assembly holds data built into the library (.incbin of the default model's weights); the files
# it includes are listed by hand (the compiler's -MMD does not see .incbin).
$(BUILD)/obj/%.o: %.S $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) -c $< -o $@
$(BUILD)/obj/models/builtin_weights_data.o: models/weights/retinaface_mnet025.safetensors

$(BUILD)/obj/%.o: %.cu $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

$(BUILD)/libretina.a: $(LIB_OBJ) $(CU_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# --exclude-libs: what static archives bring in (the CUDA runtime) stays inside.
$(BUILD)/libretina.so: $(LIB_OBJ) $(CU_OBJ)
	$(CC) -shared $(LDSAN) -Wl,-soname,libretina.so.0 -Wl,--exclude-libs,ALL -o $@ $^ $(LDLIBS)

$(BUILD)/%: $(BUILD)/obj/apps/%.o $(BUILD)/libretina.a
	$(CC) $(LDSAN) -o $@ $< $(BUILD)/libretina.a $(LDLIBS)

$(BUILD)/bench_%: $(BUILD)/obj/benchmarks/%.o $(BUILD)/libretina.a
	$(CC) $(LDSAN) -o $@ $< $(BUILD)/libretina.a $(LDLIBS)

$(BUILD)/run_tests: $(TEST_OBJ) $(BUILD)/libretina.a
	$(CC) $(LDSAN) -o $@ $(TEST_OBJ) $(BUILD)/libretina.a $(CHECK_LIBS) $(LDLIBS)

# CK_DEFAULT_TIMEOUT: the slow end-to-end suites need more than Check's 4 s default.
# The fuzz smoke run (10 s a target) follows where clang has libFuzzer; make fuzz runs 10 minutes each.
test: all $(BUILD)/run_tests
	RETINA_BUILD=$(BUILD) CK_DEFAULT_TIMEOUT=600 $(BUILD)/run_tests
	@tests/fuzz/run.sh --smoke

fuzz:
	tests/fuzz/run.sh $(or $(FUZZ_SECONDS),600)

bench: all $(BENCH)
	@for b in $(BENCH); do echo "== $$b"; $$b || exit 1; done

# make install [PREFIX=/usr/local] [DESTDIR=]: the static and shared libraries, retina.h and
# retina.pc (pkg-config; Libs.private carries the link flags a static link needs, CUDA's included).
PREFIX ?= /usr/local
install: all
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 644 $(BUILD)/libretina.a $(DESTDIR)$(PREFIX)/lib/libretina.a
	install -m 755 $(BUILD)/libretina.so $(DESTDIR)$(PREFIX)/lib/libretina.so.0
	ln -sf libretina.so.0 $(DESTDIR)$(PREFIX)/lib/libretina.so
	install -m 644 detection/retina.h $(DESTDIR)$(PREFIX)/include/retina.h
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' '' \
	  'Name: retina' 'Description: RetinaFace face detection in C (boxes, scores, landmarks, aligned crops)' \
	  'Version: 0.1.0' 'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -Wl,-rpath,$${libdir} -lretina' \
	  'Libs.private: $(LDLIBS)' > $(DESTDIR)$(PREFIX)/lib/pkgconfig/retina.pc

# Installs missing Debian packages (compiler, Check, libjpeg-turbo, zlib headers) with apt-get.
deps:
	@bash .ci/install-deps

clean:
	rm -rf build build-san build-fuzz

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(patsubst %,$(BUILD)/obj/%.d,$(basename $(wildcard apps/*.c benchmarks/*.c)))
