/* SPDX-License-Identifier: GPL-2.0-or-later */
/* key: FORMATS.md 13.2 and 13.5 vectors, key files, manifest signatures. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "crypto.h"
#include "key.h"
#include "log.h"
#include "snap.h"
#include "util.h"
#include "scratch.h"

static const char fp0[] = "0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:"
			  "90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b";

static int setup(void **state)
{
	(void)state;
	return scratch_setup("test-key");
}

static int teardown(void **state)
{
	(void)state;
	return scratch_teardown();
}

static char *write_key(const char *name, const char *json)
{
	char *path = xasprintf("%s/%s", scratch_dir, name);

	assert_int_equal(write_file_atomic(path, json, strlen(json), 0600), 0);
	return path;
}

static void test_fingerprint(void **state)
{
	struct key_material *k;
	uint8_t raw[32];
	char fp[96];
	char sfp[24];
	char hex[65];

	(void)state;
	for (int i = 0; i < 32; i++)
		raw[i] = i;
	assert_int_equal(key_from_raw(raw, &k), 0);
	hex_encode(k->id_key, 32, hex);
	assert_string_equal(hex, "7c2c013efd07f3b25717a485263343cd"
				 "4d292a4b65c200bb3b18ea227abe225c");
	key_fingerprint_str(k, fp);
	assert_string_equal(fp, fp0);
	key_fingerprint_short(k, sfp);
	assert_string_equal(sfp, "0e:ab:d4:46:0b:6e:b9:ca");
	key_free(k);
}

#define SALT "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="

static void load_ok(const char *path, const char *pass)
{
	struct key_material *k = NULL;
	char fp[96];

	assert_int_equal(key_load_file(path, pass, &k), 0);
	key_fingerprint_str(k, fp);
	assert_string_equal(fp, fp0);
	key_free(k);
}

static void test_key_files(void **state)
{
	struct key_material *k = NULL;
	char *pb;
	char *sc;
	char *plain;
	char *badfp;

	(void)state;
	pb = write_key("pbkdf2.json", "{\"kdf\":{\"PBKDF2\":{\"iter\":65535,"
		"\"salt\":\"" SALT "\"}},\"created\":\"2020-06-26T15:56:05+02:00\","
		"\"modified\":\"2020-06-26T15:56:05+02:00\",\"data\":"
		"\"AgICAgICAgICAgICAgICArKgPNTjJedVVrW8C+ZoE8wrYvm/t4B6eB8yH2snJ6qV"
		"hKu/ek9V+X6zn5xlDzW0Mw==\"}");
	sc = write_key("scrypt.json", "{\"kdf\":{\"Scrypt\":{\"n\":65536,\"r\":8,"
		"\"p\":1,\"salt\":\"" SALT "\"}},\"created\":\"2020-06-26T13:56:05Z\","
		"\"modified\":\"2020-06-26T13:56:05Z\",\"data\":"
		"\"AgICAgICAgICAgICAgICAirgKxgpx56YpgcvMM6AXh+7LXSCgt+QLhEFpxT/cjTE"
		"drZkLfN5M1fOU1yzawmG0Q==\",\"fingerprint\":\"0e:ab:d4:46:0b:6e:b9:"
		"ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:"
		"90:15:9b\"}");
	/* kdf null: data is the raw key, base64 without padding here. */
	plain = write_key("plain.json", "{\"kdf\":null,\"created\":\"x\","
		"\"modified\":\"x\",\"data\":"
		"\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\"}");
	badfp = write_key("badfp.json", "{\"kdf\":null,\"created\":\"x\","
		"\"modified\":\"x\",\"data\":"
		"\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\","
		"\"fingerprint\":\"00:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:"
		"90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b\"}");
	load_ok(pb, "testpass");
	load_ok(sc, "testpass");
	load_ok(plain, NULL);
	assert_int_equal(key_load_file(pb, "wrongpass", &k), -EACCES);
	assert_int_equal(key_load_file(sc, "wrongpass", &k), -EACCES);
	assert_int_equal(key_load_file(pb, "test", &k), -EACCES);
	assert_int_equal(key_load_file(pb, NULL, &k), -ENOKEY);
	assert_int_equal(key_load_file(badfp, NULL, &k), -EKEYREJECTED);
	assert_null(k);
	free(pb);
	free(sc);
	free(plain);
	free(badfp);
}

static void test_key_create(void **state)
{
	struct key_material *k = NULL;
	char *path = xasprintf("%s/new.json", scratch_dir);
	uint8_t raw[32];
	char fp1[96];
	char fp2[96];
	struct stat st;

	(void)state;
	memset(raw, 0x5a, sizeof(raw));
	assert_int_equal(key_create_file(path, "short", raw, false), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(key_load_file(path, "short", &k), 0);
	key_fingerprint_str(k, fp1);
	key_free(k);
	assert_int_equal(key_from_raw(raw, &k), 0);
	key_fingerprint_str(k, fp2);
	key_free(k);
	assert_string_equal(fp1, fp2);
	assert_int_equal(key_create_file(path, "four", raw, true), -EINVAL);
	/* Never replaced unless asked: the old key still loads. */
	memset(raw, 0x33, sizeof(raw));
	assert_int_equal(key_create_file(path, "other", raw, false), -EEXIST);
	assert_int_equal(key_load_file(path, "short", &k), 0);
	key_free(k);
	assert_int_equal(key_create_file(path, "other", raw, true), 0);
	assert_int_equal(key_load_file(path, "other", &k), 0);
	key_free(k);
	free(path);
}

/* key show: kdf, dates and fingerprint without the passphrase. */
static void test_key_info(void **state)
{
	struct key_material *k = NULL;
	struct key_info info;
	char *sc;
	char *plain;
	char *bad;
	char fp[96];

	(void)state;
	sc = write_key("info-scrypt.json", "{\"kdf\":{\"Scrypt\":{\"n\":65536,"
		"\"r\":8,\"p\":1,\"salt\":\"" SALT "\"}},\"created\":"
		"\"2020-06-26T13:56:05Z\",\"modified\":\"2021-01-01T00:00:00Z\","
		"\"data\":\"AgICAgICAgICAgICAgICAirgKxgpx56YpgcvMM6AXh+7LXSCgt+"
		"QLhEFpxT/cjTEdrZkLfN5M1fOU1yzawmG0Q==\",\"fingerprint\":\"0e:ab:"
		"d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:"
		"9c:0a:57:ae:19:90:90:15:9b\"}");
	plain = write_key("info-plain.json", "{\"kdf\":null,\"created\":\"x\","
		"\"modified\":\"y\",\"data\":"
		"\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\"}");
	bad = write_key("info-bad.json", "{\"kdf\":{\"Argon\":{}},\"data\":\"\"}");
	assert_int_equal(key_read_info(sc, &info), 0);
	assert_string_equal(info.kdf, "scrypt");
	assert_string_equal(info.created, "2020-06-26T13:56:05Z");
	assert_string_equal(info.modified, "2021-01-01T00:00:00Z");
	assert_true(info.has_fingerprint);
	assert_int_equal(info.fingerprint[0], 0x0e);
	assert_int_equal(info.fingerprint[31], 0x9b);
	/* A plain key without a stored fingerprint: derived, as loading. */
	assert_int_equal(key_read_info(plain, &info), 0);
	assert_string_equal(info.kdf, "none");
	assert_true(info.has_fingerprint);
	assert_int_equal(key_load_file(plain, NULL, &k), 0);
	assert_memory_equal(info.fingerprint, k->fingerprint, 32);
	key_fingerprint_str(k, fp);
	key_free(k);
	assert_int_equal(key_read_info(bad, &info), -EBADMSG);
	free(sc);
	free(plain);
	free(bad);
}

static void test_manifest_signature(void **state)
{
	struct snap_manifest *m;
	struct key_material *k;
	uint8_t raw[32];
	uint8_t c1[32];
	uint8_t c2[32];
	char sig[65];
	char fp[96];

	(void)state;
	assert_int_equal(crypto_scrypt("test", 4, "", 0, 65536, 8, 1, raw, 32),
			 0);
	assert_int_equal(key_from_raw(raw, &k), 0);
	memset(c1, 1, 32);
	memset(c2, 2, 32);
	assert_int_equal(snap_manifest_new("host", "elsa", 1593179765, &m), 0);
	snap_manifest_add_file(m, "test1.img.fidx", SNAP_CRYPT_ENCRYPT, 200, c1);
	snap_manifest_add_file(m, "abc.blob", SNAP_CRYPT_NONE, 200, c2);
	assert_int_equal(key_sign_manifest(k, m, sig), 0);
	assert_string_equal(sig, "d7b446fb7db081662081d4b40fedd858"
				 "a1d6307a5aff4ecff7d5bf4fd35679e9");
	/* Checks: signed and fingerprinted manifest. */
	key_fingerprint_str(k, fp);
	snap_manifest_set_key_fingerprint(m, fp);
	snap_manifest_set_signature(m, sig);
	assert_int_equal(key_check_manifest(k, m, "t"), 0);
	assert_int_equal(key_check_manifest(NULL, m, "t"), -ENOKEY);
	/* A tampered manifest (size changed) fails the signature. */
	((struct snap_file *)snap_manifest_file(m, 1))->size = 201;
	assert_int_equal(key_check_manifest(k, m, "t"), -EBADMSG);
	((struct snap_file *)snap_manifest_file(m, 1))->size = 200;
	/* Stripped signature with a fingerprint left: refused. */
	snap_manifest_set_signature(m, NULL);
	assert_int_equal(key_check_manifest(k, m, "t"), -EBADMSG);
	key_free(k);
	/* Another key: refused before any signature check. */
	memset(raw, 7, 32);
	assert_int_equal(key_from_raw(raw, &k), 0);
	snap_manifest_set_signature(m, sig);
	assert_int_equal(key_check_manifest(k, m, "t"), -EKEYREJECTED);
	key_free(k);
	snap_manifest_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fingerprint),
		cmocka_unit_test(test_key_files),
		cmocka_unit_test(test_key_create),
		cmocka_unit_test(test_key_info),
		cmocka_unit_test(test_manifest_signature),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
