/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pbs-livemount key: create or inspect an encryption key file.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "crypto.h"
#include "key.h"
#include "log.h"
#include "util.h"
#include "banned.h"

static const char key_desc[] =
	"create: write a new random encryption key, protected by a\n"
	"passphrase with scrypt (mode 0600).  show: print its fingerprint.\n";

int cmd_key(int argc, char **argv)
{
	struct key_material *k = NULL;
	uint8_t raw[32];
	char *pass = NULL;
	char fp[96];
	struct cli c;
	int nargs;
	int ret = 0;

	cli_init(&c);
	const struct opt opts[] = {
		OPT_STRING(0, "passphrase-file", &c.passfile, "FILE",
			   "the passphrase (first line); also\n"
			   "PBS_ENCRYPTION_PASSWORD, or a prompt"),
		OPT_CALLBACK(0, "passphrase-fd", &c.passfd, "N", cli_opt_fd,
			     "read the passphrase from descriptor N"),
		OPT_END(),
	};
	const struct opt_cmd cmd = {
		.name = "key",
		.usage = "create [options] FILE\nshow [options] FILE",
		.desc = key_desc,
		.opts = opts,
	};

	ret = opt_parse(&cmd, argc, argv, &nargs);
	if (ret) {
		ret = ret == OPT_HELP_SHOWN ? 0 : ret;
		goto out;
	}
	if (nargs != 2 || (strcmp(argv[1], "create") &&
			   strcmp(argv[1], "show"))) {
		ret = opt_usage_error("key", "needs 'create FILE' or 'show FILE'");
		goto out;
	}
	ret = cli_get_passphrase(&c, &pass);
	if (ret || !pass) {
		log_err("key: cannot get a passphrase: %s",
			ret ? strerror(-ret) : "no terminal and none given");
		ret = EXIT_FAILURE;
		goto out;
	}
	if (!strcmp(argv[1], "create")) {
		ret = crypto_random(raw, sizeof(raw));
		if (!ret)
			ret = key_create_file(argv[2], pass, raw);
		crypto_wipe(raw, sizeof(raw));
		if (ret) {
			ret = EXIT_FAILURE;
			goto out;
		}
	}
	ret = key_load_file(argv[2], pass, &k);
	if (ret) {
		ret = EXIT_FAILURE;
		goto out;
	}
	key_fingerprint_str(k, fp);
	printf("%s\n", fp);
out:
	if (pass) {
		explicit_bzero(pass, strlen(pass));
		free(pass);
	}
	key_free(k);
	cli_release(&c);
	return ret;
}
