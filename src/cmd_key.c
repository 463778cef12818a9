/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pbs-livemount key: create or inspect an encryption key file.  A key
 * file is the only way into every backup made with it, so create never
 * replaces one unless told to, and asks a terminal for the passphrase
 * twice; show needs no passphrase, as PBS's own key show.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "crypto.h"
#include "key.h"
#include "log.h"
#include "util.h"
#include "banned.h"

static const char key_desc[] =
	"create: write a new random encryption key to FILE, protected by a\n"
	"passphrase with scrypt (mode 0600), and print its fingerprint; an\n"
	"existing FILE is refused unless --force.  show: print what FILE\n"
	"says of itself (kdf, dates, fingerprint), no passphrase needed.\n";

static int key_create(struct cli *c, const char *path, bool force)
{
	struct key_material *k = NULL;
	struct stat st;
	uint8_t raw[32];
	char *pass = NULL;
	char fp[96];
	int ret;

	/* Before the passphrase is asked for; key_create_file checks again. */
	if (!force && !lstat(path, &st)) {
		log_err("key: cannot create '%s': it exists; give --force to "
			"replace it (backups made with the old key need it)",
			path);
		return -EEXIST;
	}
	ret = cli_get_new_passphrase(c, &pass);
	if (ret)
		return ret;
	if (!pass) {
		log_err("key: cannot create '%s': no passphrase (no terminal, "
			"and neither --passphrase-file nor "
			"PBS_ENCRYPTION_PASSWORD)", path);
		return -ENOKEY;
	}
	ret = crypto_random(raw, sizeof(raw));
	if (!ret)
		ret = key_create_file(path, pass, raw, force);
	if (!ret)
		ret = key_from_raw(raw, &k);
	crypto_wipe(raw, sizeof(raw));
	explicit_bzero(pass, strlen(pass));
	free(pass);
	if (ret)
		return ret;
	key_fingerprint_str(k, fp);
	printf("%s\n", fp);
	key_free(k);
	return 0;
}

static int key_show(const char *path)
{
	struct key_info info;
	char fp[96];
	int ret;

	ret = key_read_info(path, &info);
	if (ret)
		return ret;
	if (info.has_fingerprint)
		fingerprint_encode(info.fingerprint, 32, fp);
	else
		snprintf(fp, sizeof(fp), "(not stored in the file)");
	printf("path:        %s\n", path);
	printf("kdf:         %s\n", info.kdf);
	printf("created:     %s\n", info.created[0] ? info.created : "-");
	printf("modified:    %s\n", info.modified[0] ? info.modified : "-");
	printf("fingerprint: %s\n", fp);
	return 0;
}

int cmd_key(int argc, char **argv)
{
	bool force = false;
	struct cli c;
	int nargs;
	int ret = 0;

	cli_init(&c);
	const struct opt opts[] = {
		OPT_BOOL(0, "force", &force,
			 "create: replace an existing FILE"),
		OPT_STRING(0, "passphrase-file", &c.passfile, "FILE",
			   "the passphrase (first line); also\n"
			   "PBS_ENCRYPTION_PASSWORD, or a prompt"),
		OPT_CALLBACK(0, "passphrase-fd", &c.passfd, "N", cli_opt_fd,
			     "read the passphrase from descriptor N"),
		OPT_END(),
	};
	const struct opt_cmd cmd = {
		.name = "key",
		.usage = "create [--force] [options] FILE\nshow FILE",
		.desc = key_desc,
		.opts = opts,
	};

	if (!opt_parse_main(&cmd, argc, argv, &nargs, &ret))
		goto out;
	if (nargs == 2 && !strcmp(argv[1], "create")) {
		ret = cli_exit_code(key_create(&c, argv[2], force));
	} else if (nargs == 2 && !strcmp(argv[1], "show")) {
		ret = cli_exit_code(key_show(argv[2]));
	} else {
		ret = opt_usage_error("key", "needs 'create FILE' or "
				      "'show FILE'");
	}
out:
	cli_release(&c);
	return ret;
}
