# pbs-livemount: hand-written Makefile.  ./configure (autoconf) writes
# config.mk and config.h; a fresh checkout runs it by itself.
#
#   make                  build ./pbs-livemount
#   make check            install missing packages, run every test
#   make check SANITIZE=address|thread   the same under a sanitizer
#   make demo             the main job end to end
#   make bench            performance figures (bench/results/latest.md)
#   make fuzz             libFuzzer targets, FUZZ_SECONDS each (default 60)
#   V=1                   show the commands

.DEFAULT_GOAL := all
PROG := pbs-livemount
SANITIZE ?=
ifeq ($(SANITIZE),)
B := build
else
B := build-$(SANITIZE)
endif
ifeq ($(CI),true)
WERROR ?= 1
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

# Bootstrap: a fresh checkout has neither configure nor config.mk.
ifeq ($(filter clean distclean deps,$(MAKECMDGOALS)),)
include config.mk
endif

config.mk config.h: configure config.mk.in
	./configure $(CONFIGURE_ARGS)
	@touch config.mk config.h

configure: configure.ac
	@command -v autoconf >/dev/null && command -v aclocal >/dev/null \
		&& pkg-config --exists fuse3 libcurl libzstd liburcu-cds json-c libnghttp2 \
			libvirt-qemu libxml-2.0 libsystemd \
		|| scripts/install-deps
	mkdir -p m4 && aclocal -I m4 --install && autoheader && autoconf

SAN_FLAGS :=
ifeq ($(SANITIZE),address)
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined
endif
ifeq ($(SANITIZE),thread)
SAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer
endif

CPPFLAGS_ALL := -Iinclude -I. -include config.h -D_GNU_SOURCE \
	-D_FILE_OFFSET_BITS=64
CFLAGS_ALL := -std=gnu11 -g -O2 -pthread $(WARN_CFLAGS) \
	$(if $(WERROR),-Werror) $(SAN_FLAGS) $(DEP_CFLAGS) $(CPPFLAGS_ALL)
LDFLAGS_ALL := -pthread $(SAN_FLAGS)
LIBS_ALL := $(DEP_LIBS) -lm

SRCS := $(wildcard src/*.c)
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
LIB_OBJS := $(patsubst src/%.c,$(B)/%.o,$(LIB_SRCS))
LIBA := $(B)/libpbslm.a
UNIT_SRCS := $(wildcard tests/unit/test-*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRCS))

all: $(PROG)

ifeq ($(SANITIZE),)
$(PROG): $(B)/main.o $(LIBA)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ALL)
else
$(PROG): $(B)/$(PROG)
	@true
endif

$(B)/$(PROG): $(B)/main.o $(LIBA)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ALL)

$(B)/%.o: src/%.c config.mk config.h
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_ALL) -MMD -MP -c -o $@ $<

$(LIBA): $(LIB_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^

$(B)/tests/%: tests/unit/%.c $(LIBA)
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_ALL) $(CMOCKA_CFLAGS) -MMD -MP -o $@ $< $(LIBA) \
		$(LDFLAGS_ALL) $(CMOCKA_LIBS) $(LIBS_ALL)

$(B)/bench/%: bench/%.c $(LIBA)
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $< $(LIBA) $(LDFLAGS_ALL) $(LIBS_ALL)

-include $(wildcard $(B)/*.d $(B)/tests/*.d)

unit: $(UNIT_BINS)

# The binary that the shell tests run: sanitised builds test their own.
TEST_PROG = $(if $(SANITIZE),$(B)/$(PROG),$(CURDIR)/$(PROG))

deps:
	scripts/install-deps

check: deps
	$(MAKE) all unit
	@command -v $(FUZZ_CC) >/dev/null && $(MAKE) fuzz-build || \
		echo "fuzz: $(FUZZ_CC) missing: the corpus replay test will skip"
	PROG=$(abspath $(TEST_PROG)) BUILD=$(abspath $(B)) \
		SANITIZE=$(SANITIZE) tests/run-tests $(TESTS)

check-unit: unit
	PROG=$(abspath $(TEST_PROG)) BUILD=$(abspath $(B)) \
		tests/run-tests --unit-only

valgrind: unit
	PROG=$(abspath $(TEST_PROG)) BUILD=$(abspath $(B)) \
		VALGRIND=1 tests/run-tests --unit-only

# libFuzzer targets (tests/fuzz): clang, ASan + UBSan, the library built
# again with FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION (checksums a fuzzer
# cannot forge are not checked).
FUZZ_CC ?= clang
FUZZ_B := build-fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -std=gnu11 -g -O1 -pthread -Wall -Wextra \
	-fsanitize=fuzzer-no-link $(FUZZ_SAN) \
	-DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION $(DEP_CFLAGS) $(CPPFLAGS_ALL)
FUZZ_OBJS := $(patsubst src/%.c,$(FUZZ_B)/%.o,$(LIB_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz-*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(FUZZ_B)/%,$(FUZZ_SRCS))
FUZZ_SECONDS ?= 60

$(FUZZ_B)/%.o: src/%.c config.mk config.h
	@mkdir -p $(@D)
	@echo "  FUZZCC  $<"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<

# Kept between builds (make would delete them as intermediates); their
# header dependencies come from the .d files.
.SECONDARY: $(FUZZ_OBJS)
-include $(wildcard $(FUZZ_B)/*.d)

$(FUZZ_B)/fuzz-%: tests/fuzz/fuzz-%.c tests/fuzz/fuzz.h $(FUZZ_OBJS)
	@echo "  FUZZLD  $@"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJS) \
		-pthread $(LIBS_ALL)

fuzz-build: $(FUZZ_BINS)

fuzz: deps
	$(MAKE) fuzz-build
	tests/fuzz/run $(FUZZ_SECONDS)

demo: deps
	$(MAKE) all
	PROG=$(CURDIR)/$(PROG) scripts/demo

bench: deps
	scripts/install-deps --bench
	$(MAKE) all $(B)/bench/decode-loop
	PROG=$(CURDIR)/$(PROG) BUILD=$(abspath $(B)) bench/run

check-headers:
	$(Q)for h in include/*.h; do \
		echo "#include \"$$h\"" | $(CC) $(CFLAGS_ALL) -x c -fsyntax-only - \
		|| exit 1; done; echo "headers: self-contained"

check-format:
	scripts/check-format

lint:
	mandoc -Tlint -W warning man/$(PROG).1
	cppcheck -q --error-exitcode=1 --enable=warning,portability \
		--inline-suppr -Iinclude src

# The unit goes where Debian's systemd looks (not under prefix).
unitdir ?= /lib/systemd/system
completiondir ?= $(datarootdir)/bash-completion/completions
install: all
	install -D -m 0755 $(PROG) $(DESTDIR)$(bindir)/$(PROG)
	install -D -m 0644 man/$(PROG).1 $(DESTDIR)$(mandir)/man1/$(PROG).1
	install -d $(DESTDIR)$(unitdir)
	sed 's|@bindir@|$(bindir)|g' systemd/$(PROG)@.service.in \
		>$(DESTDIR)$(unitdir)/$(PROG)@.service
	chmod 0644 $(DESTDIR)$(unitdir)/$(PROG)@.service
	install -D -m 0644 systemd/example.conf \
		$(DESTDIR)$(datarootdir)/doc/$(PROG)/example.conf
	install -D -m 0644 contrib/bash-completion \
		$(DESTDIR)$(completiondir)/$(PROG)

clean:
	rm -rf build build-* $(PROG)

distclean: clean
	rm -rf config.mk config.h config.log config.status configure \
		aclocal.m4 autom4te.cache m4

.PHONY: all unit deps check check-unit valgrind demo bench check-headers \
	fuzz fuzz-build \
	check-format lint install clean distclean
.DELETE_ON_ERROR:
