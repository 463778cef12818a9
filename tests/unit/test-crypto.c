/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Vectors from shared/FORMATS.md section 13. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>

#include <cmocka.h>

#include "crypto.h"
#include "util.h"

static void assert_hex(const uint8_t *b, size_t n, const char *want)
{
	char hex[129];

	hex_encode(b, n, hex);
	assert_string_equal(hex, want);
}

static void test_sha256(void **state)
{
	uint8_t d[32];

	(void)state;
	crypto_sha256("hello", 5, d);
	assert_hex(d, 32, "2cf24dba5fb0a30e26e83b2ac5b9e29e"
			  "1b161e5c1fa7425e73043362938b9824");
	crypto_sha256_2("hel", 3, "lo", 2, d);
	assert_hex(d, 32, "2cf24dba5fb0a30e26e83b2ac5b9e29e"
			  "1b161e5c1fa7425e73043362938b9824");
	crypto_sha256("Proxmox Backup Encryption Key Fingerprint", 41, d);
	assert_hex(d, 32, "6ed0ef77471fff4d55c7a8fe4a9db621"
			  "61407f134c725ddf30992d25ec45ed26");
}

static void test_pbkdf2_id_key(void **state)
{
	uint8_t key[32];
	uint8_t id[32];

	(void)state;
	for (int i = 0; i < 32; i++)
		key[i] = i;
	assert_int_equal(crypto_pbkdf2_sha256(key, 32, "_id_key", 7, 10, id,
					      32), 0);
	assert_hex(id, 32, "7c2c013efd07f3b25717a485263343cd"
			   "4d292a4b65c200bb3b18ea227abe225c");
}

static void test_scrypt(void **state)
{
	uint8_t k[32];

	(void)state;
	assert_int_equal(crypto_scrypt("test", 4, "", 0, 65536, 8, 1, k, 32), 0);
	assert_hex(k, 32, "28cdb1a3bef39396c3860e00d448fe7a"
			  "0efd8244486ab6feb30457681d31597e");
}

static void test_gcm(void **state)
{
	uint8_t key[32];
	uint8_t iv[16];
	uint8_t ct[5];
	uint8_t pt[5];
	uint8_t tag[16];

	(void)state;
	for (int i = 0; i < 32; i++)
		key[i] = i;
	memset(iv, 0x11, sizeof(iv));
	assert_int_equal(crypto_gcm_encrypt(key, iv, "hello", 5, ct, tag), 0);
	assert_hex(ct, 5, "2879b16d1f");
	assert_hex(tag, 16, "43eafcfc90bf4dda5b857dd0d1621c9c");
	assert_int_equal(crypto_gcm_decrypt(key, iv, ct, 5, tag, pt), 0);
	assert_memory_equal(pt, "hello", 5);
	/* Any change to ciphertext, IV or tag fails, and wipes the output. */
	ct[0] ^= 1;
	assert_int_equal(crypto_gcm_decrypt(key, iv, ct, 5, tag, pt), -EBADMSG);
	assert_memory_equal(pt, "\0\0\0\0\0", 5);
	ct[0] ^= 1;
	iv[3] ^= 1;
	assert_int_equal(crypto_gcm_decrypt(key, iv, ct, 5, tag, pt), -EBADMSG);
	iv[3] ^= 1;
	tag[15] ^= 1;
	assert_int_equal(crypto_gcm_decrypt(key, iv, ct, 5, tag, pt), -EBADMSG);
}

static void test_hmac_equal(void **state)
{
	uint8_t a[32];

	(void)state;
	/* RFC 4231 test case 2 */
	assert_int_equal(crypto_hmac_sha256("Jefe", 4,
		"what do ya want for nothing?", 28, a), 0);
	assert_hex(a, 32, "5bdcc146bf60754e6a042426089575c7"
			  "5a003f089d2739839dec58b964ec3843");
	assert_true(crypto_equal("abc", "abc", 3));
	assert_false(crypto_equal("abc", "abd", 3));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256),
		cmocka_unit_test(test_pbkdf2_id_key),
		cmocka_unit_test(test_scrypt),
		cmocka_unit_test(test_gcm),
		cmocka_unit_test(test_hmac_equal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
