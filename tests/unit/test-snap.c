/* SPDX-License-Identifier: GPL-2.0-or-later */
/* snap: FORMATS.md section 13 vectors and the strictness of the parsers. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto.h"
#include "snap.h"
#include "util.h"

static const char zero_hex[] =
	"bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8";
static const char hello_hex[] =
	"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

static void assert_hex(const uint8_t *b, size_t n, const char *want)
{
	char hex[129];

	hex_encode(b, n, hex);
	assert_string_equal(hex, want);
}

static void test_magics(void **state)
{
	static const struct {
		const uint8_t *magic;
		const char *text;
	} v[] = {
		{ SNAP_MAGIC_FIDX, "Proxmox Backup fixed sized chunk index v1.0" },
		{ SNAP_MAGIC_DIDX, "Proxmox Backup dynamic sized chunk index v1.0" },
		{ SNAP_MAGIC_BLOB_PLAIN, "Proxmox Backup uncompressed blob v1.0" },
		{ SNAP_MAGIC_BLOB_ZSTD, "Proxmox Backup zstd compressed blob v1.0" },
		{ SNAP_MAGIC_BLOB_ENC, "Proxmox Backup encrypted blob v1.0" },
		{ SNAP_MAGIC_BLOB_ENC_ZSTD,
		  "Proxmox Backup zstd compressed encrypted blob v1.0" },
		{ SNAP_MAGIC_CATALOG, "Proxmox Backup Catalog file v1.0" },
	};
	uint8_t d[32];

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		crypto_sha256(v[i].text, strlen(v[i].text), d);
		assert_memory_equal(v[i].magic, d, 8);
	}
}

/* The 13.4 golden index: zero chunk + "hello", size 4 MiB + 5. */
static void golden(uint8_t **buf, size_t *len)
{
	uint8_t digests[64];
	uint8_t uuid[16];
	uint8_t csum[32];

	hex_decode(zero_hex, digests, 32);
	hex_decode(hello_hex, digests + 32, 32);
	for (int i = 0; i < 16; i++)
		uuid[i] = i;
	assert_int_equal(snap_fidx_encode(4194309, 4194304, digests, 2, uuid,
					  1700000000, buf, len, csum), 0);
	assert_hex(csum, 32, "1d77917af4c67365bbe8f81698b46491"
			     "2c59b4261bbe4ee013b7243f2ab57ef1");
}

static void test_fidx_golden(void **state)
{
	struct snap_error err;
	struct snap_fidx *f = NULL;
	uint8_t *buf;
	size_t len;
	uint8_t d[32];

	(void)state;
	golden(&buf, &len);
	assert_int_equal(len, 4160);
	crypto_sha256(buf, len, d);
	assert_hex(d, 32, "2450d5c5e13fcce000a58198a8b17280"
			  "4226aba76d7f627a1238730c816b4285");
	assert_int_equal(snap_fidx_parse(buf, len, &f, &err), 0);
	assert_int_equal(snap_fidx_count(f), 2);
	assert_int_equal(snap_fidx_size(f), 4194309);
	assert_int_equal(snap_fidx_chunk_len(f, 0), 4194304);
	assert_int_equal(snap_fidx_chunk_len(f, 1), 5);
	assert_int_equal(snap_fidx_ctime(f), 1700000000);
	assert_hex(snap_fidx_digest(f, 1), 32, hello_hex);
	assert_true(snap_fidx_header_csum_ok(f));
	snap_fidx_free(f);
	free(buf);
}

/*
 * Indexes dominated by one digest are held compactly: every chunk's
 * digest must still be its own, at word edges and in plain indexes too.
 */
static void check_digests(uint64_t n, uint64_t every, size_t max_mem)
{
	struct snap_fidx *f = NULL;
	uint8_t *digests = xmalloc(n * 32);
	uint8_t uuid[16] = { 0 };
	uint8_t csum[32];
	uint8_t *buf;
	size_t len;

	for (uint64_t i = 0; i < n; i++) {
		memset(digests + 32 * i, 0xaa, 32);
		if (every && i % every == 0)
			memcpy(digests + 32 * i, &i, sizeof(i));
	}
	assert_int_equal(snap_fidx_encode(n * 4096, 4096, digests, n, uuid, 1,
					  &buf, &len, csum), 0);
	assert_int_equal(snap_fidx_parse(buf, len, &f, NULL), 0);
	assert_memory_equal(snap_fidx_csum(f), csum, 32);
	for (uint64_t i = 0; i < n; i++)
		assert_memory_equal(snap_fidx_digest(f, i), digests + 32 * i,
				    32);
	assert_true(snap_fidx_mem(f) <= max_mem);
	snap_fidx_free(f);
	free(buf);
	free(digests);
}

static void test_fidx_compact(void **state)
{
	(void)state;
	/* mostly one digest: compact */
	check_digests(1000, 7, 1000 / 7 * 32 + 1024);
	check_digests(129, 64, 3 * 32 + 1024);	/* others at word edges */
	check_digests(1, 0, 1024);
	check_digests(64, 0, 1024);		/* all one digest */
	check_digests(300, 1, 300 * 32 + 1024);	/* all distinct: plain */
	check_digests(300, 3, 100 * 32 + 1024);	/* 2/3 one: compact */
}

static void test_fidx_strict(void **state)
{
	struct snap_error err;
	struct snap_fidx *f = NULL;
	uint8_t *buf;
	uint8_t *big;
	size_t len;

	(void)state;
	golden(&buf, &len);
	/* One byte short, one digest too many. */
	assert_int_equal(snap_fidx_parse(buf, 4159, &f, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "offset"));
	big = calloc(1, 4192);
	memcpy(big, buf, len);
	assert_int_equal(snap_fidx_parse(big, 4192, &f, &err), -EBADMSG);
	free(big);
	/* Chunk size 3000000 (not a power of two). */
	buf[72] = 0xc0; buf[73] = 0xc6; buf[74] = 0x2d; buf[75] = 0;
	assert_int_equal(snap_fidx_parse(buf, len, &f, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "offset 72"));
	golden(&big, &len);
	/* Size 0. */
	memset(big + 64, 0, 8);
	assert_int_equal(snap_fidx_parse(big, len, &f, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "offset 64"));
	free(big);
	/* Wrong magic; a dynamic index. */
	golden(&big, &len);
	big[0] ^= 1;
	assert_int_equal(snap_fidx_parse(big, len, &f, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "magic at offset 0"));
	memcpy(big, SNAP_MAGIC_DIDX, 8);
	assert_int_equal(snap_fidx_parse(big, len, &f, &err),
			 -EPROTONOSUPPORT);
	/* Truncated below the header. */
	memcpy(big, SNAP_MAGIC_FIDX, 8);
	assert_int_equal(snap_fidx_parse(big, 100, &f, &err), -EBADMSG);
	free(big);
	free(buf);
}

static const char canonical_13_2[] =
	"{\"backup-id\":\"elsa\",\"backup-time\":1593179765,"
	"\"backup-type\":\"host\",\"files\":[{\"crypt-mode\":\"encrypt\","
	"\"csum\":\"0101010101010101010101010101010101010101010101010101010101010101\","
	"\"filename\":\"test1.img.fidx\",\"size\":200},{\"crypt-mode\":\"none\","
	"\"csum\":\"0202020202020202020202020202020202020202020202020202020202020202\","
	"\"filename\":\"abc.blob\",\"size\":200}]}";

static struct snap_manifest *manifest_13_2(void)
{
	struct snap_manifest *m;
	uint8_t c1[32];
	uint8_t c2[32];

	memset(c1, 1, 32);
	memset(c2, 2, 32);
	assert_int_equal(snap_manifest_new("host", "elsa", 1593179765, &m), 0);
	assert_int_equal(snap_manifest_add_file(m, "test1.img.fidx",
						SNAP_CRYPT_ENCRYPT, 200, c1), 0);
	assert_int_equal(snap_manifest_add_file(m, "abc.blob", SNAP_CRYPT_NONE,
						200, c2), 0);
	return m;
}

static void test_manifest_canonical(void **state)
{
	struct snap_manifest *m = manifest_13_2();
	struct snap_manifest *m2 = NULL;
	struct snap_error err;
	char *canon;
	char *json;
	size_t len;

	(void)state;
	assert_int_equal(snap_manifest_canonical(m, &canon, &len), 0);
	assert_string_equal(canon, canonical_13_2);
	assert_int_equal(len, strlen(canonical_13_2));
	free(canon);
	/* Encode -> parse keeps everything, unprotected included. */
	assert_int_equal(snap_manifest_set_key_fingerprint(m, "aa:bb"), 0);
	assert_int_equal(snap_manifest_set_signature(m,
		"d7b446fb7db081662081d4b40fedd858a1d6307a5aff4ecff7d5bf4fd35679e9"), 0);
	assert_int_equal(snap_manifest_encode(m, &json, &len), 0);
	assert_int_equal(snap_manifest_parse(json, len, &m2, &err), 0);
	assert_string_equal(snap_manifest_key_fingerprint(m2), "aa:bb");
	assert_string_equal(snap_manifest_signature(m2),
		"d7b446fb7db081662081d4b40fedd858a1d6307a5aff4ecff7d5bf4fd35679e9");
	assert_int_equal(snap_manifest_nfiles(m2), 2);
	assert_int_equal(snap_manifest_find(m2, "test1.img.fidx")->crypt_mode,
			 SNAP_CRYPT_ENCRYPT);
	assert_null(snap_manifest_find(m2, "nope"));
	assert_int_equal(snap_manifest_canonical(m2, &canon, &len), 0);
	assert_string_equal(canon, canonical_13_2);
	free(canon);
	free(json);
	snap_manifest_free(m2);
	snap_manifest_free(m);
}

static void expect_bad(const char *json, const char *field)
{
	struct snap_manifest *m = NULL;
	struct snap_error err = { "" };

	assert_int_equal(snap_manifest_parse(json, strlen(json), &m, &err),
			 -EBADMSG);
	assert_null(m);
	if (!strstr(err.msg, field))
		fail_msg("error '%s' does not name '%s'", err.msg, field);
}

#define FILE_OK "{\"filename\":\"a.img.fidx\",\"size\":1,\"csum\":\"" \
	"0101010101010101010101010101010101010101010101010101010101010101\"}"

static void test_manifest_bad(void **state)
{
	struct snap_manifest *m = NULL;
	struct snap_error err;
	const char *ok = "{\"backup-type\":\"vm\",\"backup-id\":\"1\","
			 "\"backup-time\":5,\"files\":[" FILE_OK "]}";

	(void)state;
	assert_int_equal(snap_manifest_parse(ok, strlen(ok), &m, &err), 0);
	/* crypt-mode defaults to none, unprotected to {} */
	assert_int_equal(snap_manifest_file(m, 0)->crypt_mode, SNAP_CRYPT_NONE);
	assert_null(snap_manifest_key_fingerprint(m));
	snap_manifest_free(m);
	expect_bad("[]", "object");
	expect_bad("{\"backup-type\":\"vm\"", "JSON");
	expect_bad("{\"backup-type\":\"xx\",\"backup-id\":\"1\",\"backup-time\":5,"
		   "\"files\":[]}", "backup-type");
	expect_bad("{\"backup-type\":\"vm\",\"backup-id\":\"../x\","
		   "\"backup-time\":5,\"files\":[]}", "backup-id");
	expect_bad("{\"backup-type\":\"vm\",\"backup-id\":\"1\","
		   "\"backup-time\":\"5\",\"files\":[]}", "backup-time");
	expect_bad("{\"backup-type\":\"vm\",\"backup-id\":\"1\","
		   "\"backup-time\":5}", "files");
	expect_bad("{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":5,"
		   "\"files\":[" FILE_OK ",{\"filename\":\"a/b\",\"size\":1,"
		   "\"csum\":\"00\"}]}", "files[1].filename");
	expect_bad("{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":5,"
		   "\"files\":[{\"filename\":\"..\",\"size\":1}]}",
		   "files[0].filename");
	expect_bad("{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":5,"
		   "\"files\":[{\"filename\":\"x\",\"size\":-1}]}",
		   "files[0].size");
	expect_bad("{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":5,"
		   "\"files\":[{\"filename\":\"x\",\"size\":1,\"csum\":\"zz\"}]}",
		   "files[0].csum");
	expect_bad("{\"backup-type\":\"vm\",\"backup-id\":\"1\",\"backup-time\":5,"
		   "\"files\":[],\"signature\":\"short\"}", "signature");
}

static void test_names(void **state)
{
	struct snap_error err;
	char ts[21];
	char path[80];
	char *p;
	char *type;
	char *id;
	int64_t t;
	uint8_t d[32];

	(void)state;
	assert_true(snap_is_safe_id("drive-scsi0.img.fidx"));
	assert_true(snap_is_safe_id("_x"));
	assert_false(snap_is_safe_id(".hidden"));
	assert_false(snap_is_safe_id("a/b"));
	assert_false(snap_is_safe_id(""));
	assert_false(snap_is_safe_id("-x"));
	assert_int_equal(snap_format_time(1593179765, ts), 0);
	assert_string_equal(ts, "2020-06-26T13:56:05Z");
	assert_int_equal(snap_parse_time("2020-06-26T13:56:05Z", &t), 0);
	assert_int_equal(t, 1593179765);
	assert_int_equal(snap_parse_time("2020-02-30T00:00:00Z", &t), -EINVAL);
	assert_int_equal(snap_parse_time("2020-06-26 13:56:05Z", &t), -EINVAL);
	assert_int_equal(snap_parse_time("2020-06-26T13:56:05", &t), -EINVAL);
	assert_int_equal(snap_ns_path("a/b", &p), 0);
	assert_string_equal(p, "ns/a/ns/b");
	free(p);
	assert_int_equal(snap_ns_path(NULL, &p), 0);
	assert_string_equal(p, "");
	free(p);
	assert_int_equal(snap_ns_path("a/../b", &p), -EINVAL);
	assert_int_equal(snap_ns_path("a//b", &p), -EINVAL);
	assert_int_equal(snap_ns_path("a/b/c/d/e/f/g/h", &p), -EINVAL);
	assert_int_equal(snap_snapshot_path("x", "vm", "100", 1593179765, &p), 0);
	assert_string_equal(p, "ns/x/vm/100/2020-06-26T13:56:05Z");
	free(p);
	assert_int_equal(snap_parse_spec("vm/100", &type, &id, &t, &err), 0);
	assert_string_equal(type, "vm");
	assert_string_equal(id, "100");
	assert_int_equal(t, -1);
	free(type);
	free(id);
	assert_int_equal(snap_parse_spec("ct/7/2020-06-26T13:56:05Z", &type,
					 &id, &t, &err), 0);
	assert_int_equal(t, 1593179765);
	free(type);
	free(id);
	assert_int_equal(snap_parse_spec("host/h/1593179765", &type, &id, &t,
					 &err), 0);
	assert_int_equal(t, 1593179765);
	free(type);
	free(id);
	assert_int_equal(snap_parse_spec("vm", &type, &id, &t, &err), -EBADMSG);
	assert_int_equal(snap_parse_spec("xx/1", &type, &id, &t, &err),
			 -EBADMSG);
	assert_int_equal(snap_parse_spec("vm/../x", &type, &id, &t, &err),
			 -EBADMSG);
	assert_int_equal(snap_parse_spec("vm/1/yesterday", &type, &id, &t,
					 &err), -EBADMSG);
	hex_decode(zero_hex, d, 32);
	snap_chunk_path(d, path);
	assert_string_equal(path, ".chunks/bb9f/bb9f8df61474d25e71fa00722318cd38"
				  "7396ca1736605e1248821cc0de3d3af8");
}

/* The manifest as PBS writes it: serde_json's to_string_pretty of a
 * Value (sorted keys, two spaces, "{}" when empty, null kept). */
static void test_manifest_pretty(void **state)
{
	static const char want[] =
		"{\n"
		"  \"backup-id\": \"100\",\n"
		"  \"backup-time\": 1700000000,\n"
		"  \"backup-type\": \"vm\",\n"
		"  \"files\": [\n"
		"    {\n"
		"      \"crypt-mode\": \"none\",\n"
		"      \"csum\": \"0101010101010101010101010101010101010101010101010101010101010101\",\n"
		"      \"filename\": \"drive-scsi0.img.fidx\",\n"
		"      \"size\": 4096\n"
		"    }\n"
		"  ],\n"
		"  \"signature\": null,\n"
		"  \"unprotected\": {}\n"
		"}";
	static const char stats[] =
		"  \"unprotected\": {\n"
		"    \"chunk_upload_stats\": {\n"
		"      \"compressed_size\": 30,\n"
		"      \"count\": 2,\n"
		"      \"duplicates\": 1,\n"
		"      \"size\": 8192\n"
		"    }\n"
		"  }\n";
	struct snap_manifest *m;
	uint8_t csum[32];
	char *out;
	size_t len;

	(void)state;
	memset(csum, 1, sizeof(csum));
	assert_int_equal(snap_manifest_new("vm", "100", 1700000000, &m), 0);
	assert_int_equal(snap_manifest_add_file(m, "drive-scsi0.img.fidx",
						SNAP_CRYPT_NONE, 4096, csum), 0);
	assert_int_equal(snap_manifest_encode(m, &out, &len), 0);
	assert_int_equal(len, strlen(want));
	assert_string_equal(out, want);
	free(out);
	assert_int_equal(snap_manifest_set_upload_stats(m, 2, 8192, 30, 1), 0);
	assert_int_equal(snap_manifest_encode(m, &out, &len), 0);
	assert_non_null(strstr(out, stats));
	free(out);
	snap_manifest_free(m);
}

static void test_archive_stem(void **state)
{
	static const char *const cases[][2] = {
		{ "drive-scsi0.img.fidx", "drive-scsi0" },
		{ "drive-scsi0.img", "drive-scsi0" },
		{ "drive-scsi0", "drive-scsi0" },
		{ "a.img.fidx.img", "a.img.fidx" },
		{ ".img", ".img" },
		{ "qemu-server.conf.blob", "qemu-server.conf.blob" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = snap_archive_stem(cases[i][0]);

		assert_string_equal(s, cases[i][1]);
		free(s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_magics),
		cmocka_unit_test(test_fidx_golden),
		cmocka_unit_test(test_fidx_strict),
		cmocka_unit_test(test_fidx_compact),
		cmocka_unit_test(test_manifest_canonical),
		cmocka_unit_test(test_manifest_pretty),
		cmocka_unit_test(test_manifest_bad),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_archive_stem),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
