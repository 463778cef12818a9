/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pbs-livemount key: create or inspect an encryption key file.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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

static const char key_help[] =
	"usage: pbs-livemount key create [options] FILE\n"
	"       pbs-livemount key show [options] FILE\n"
	"\n"
	"create: write a new random encryption key, protected by a\n"
	"passphrase with scrypt (mode 0600).  show: print its fingerprint.\n"
	"\n"
	"  --passphrase-file FILE, --passphrase-fd N, PBS_ENCRYPTION_PASSWORD,\n"
	"                          or a prompt on a terminal\n";

int cmd_key(int argc, char **argv)
{
	static const struct option longopts[] = {
		REPO_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct key_material *k = NULL;
	uint8_t raw[32];
	char *pass = NULL;
	char fp[96];
	struct cli c;
	bool handled;
	int ret = 0;
	int opt;

	cli_init(&c);
	while ((opt = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		ret = cli_parse_repo_opt(&c, "key", opt, optarg, &handled);
		if (ret)
			goto out;
		if (handled)
			continue;
		if (opt == 'h') {
			fputs(key_help, stdout);
			goto out;
		}
		ret = EXIT_USAGE;
		goto out;
	}
	if (argc - optind != 2 || (strcmp(argv[optind], "create") &&
				   strcmp(argv[optind], "show"))) {
		ret = cli_usage_error("key", "needs 'create FILE' or 'show FILE'");
		goto out;
	}
	ret = cli_get_passphrase(&c, &pass);
	if (ret || !pass) {
		log_err("key: cannot get a passphrase: %s",
			ret ? strerror(-ret) : "no terminal and none given");
		ret = EXIT_FAILURE;
		goto out;
	}
	if (!strcmp(argv[optind], "create")) {
		ret = crypto_random(raw, sizeof(raw));
		if (!ret)
			ret = key_create_file(argv[optind + 1], pass, raw);
		crypto_wipe(raw, sizeof(raw));
		if (ret) {
			ret = EXIT_FAILURE;
			goto out;
		}
	}
	ret = key_load_file(argv[optind + 1], pass, &k);
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
