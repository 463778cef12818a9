/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_OPT_H
#define PBSLM_OPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "compiler.h"

/*
 * Command-line options as table rows, in the spirit of git's
 * parse-options: one row holds an option's names, its argument, the
 * variable it sets and its help text.  From one table per command come
 * the parser, the --help text and, through --help, the man-page check
 * (tests/test-cli-doc.sh).  Long options match exactly, never by prefix:
 * a new option must not change what an old command line means.
 *
 * Tables are usually built on the stack of the command's function, so
 * that rows can point at its locals.  Strings are borrowed from argv.
 * Main thread only.
 */

#define EXIT_USAGE 2

enum opt_type {
	OPTION_END,
	OPTION_BOOL,		/* bool *: set to true */
	OPTION_STRING,		/* const char **: the argument as given */
	OPTION_PATH,		/* char **: made absolute (malloc'ed; the
				   previous value is freed) */
	OPTION_LIST,		/* struct opt_list *: repeatable */
	OPTION_UINT,		/* unsigned int *: decimal, [min, max] */
	OPTION_SIZE,		/* uint64_t *: K/M/G/T, decimals; [min, max] */
	OPTION_DURATION,	/* uint64_t *: ms (s default; ms/s/m/h) */
	OPTION_CALLBACK,	/* ->cb(->value, arg) */
	OPTION_INCLUDE,		/* the rows of ->include; ->help: heading */
};

/*
 * An OPTION_CALLBACK row's handler.  0, or -errno with the reason in
 * @why (the parser prints "CMD: --name: <why>").
 */
typedef int (*opt_cb)(void *value, const char *arg, char *why, size_t len);

struct opt {
	enum opt_type type;
	char short_name;		/* 0: long only */
	const char *long_name;		/* NULL: short only */
	const char *argh;		/* argument name; NULL: takes none */
	void *value;
	const char *help;		/* lines separated by '\n' */
	uint64_t min;			/* UINT, SIZE, DURATION */
	uint64_t max;			/* 0: no upper limit */
	opt_cb cb;
	const struct opt *include;
};

/* A repeatable option's values, in order (strings borrowed from argv). */
struct opt_list {
	const char **v;			/* malloc'ed */
	size_t n;
};
void opt_list_release(struct opt_list *l);

#define OPT_END() { .type = OPTION_END }
#define OPT_BOOL(s, l, v, h) \
	{ .type = OPTION_BOOL, .short_name = (s), .long_name = (l), \
	  .value = (v), .help = (h) }
#define OPT_STRING(s, l, v, a, h) \
	{ .type = OPTION_STRING, .short_name = (s), .long_name = (l), \
	  .argh = (a), .value = (v), .help = (h) }
#define OPT_PATH(l, v, a, h) \
	{ .type = OPTION_PATH, .long_name = (l), .argh = (a), .value = (v), \
	  .help = (h) }
#define OPT_LIST(l, v, a, h) \
	{ .type = OPTION_LIST, .long_name = (l), .argh = (a), .value = (v), \
	  .help = (h) }
#define OPT_UINT(l, v, a, lo, hi, h) \
	{ .type = OPTION_UINT, .long_name = (l), .argh = (a), .value = (v), \
	  .min = (lo), .max = (hi), .help = (h) }
#define OPT_SIZE(l, v, a, lo, hi, h) \
	{ .type = OPTION_SIZE, .long_name = (l), .argh = (a), .value = (v), \
	  .min = (lo), .max = (hi), .help = (h) }
#define OPT_DURATION(l, v, a, lo, hi, h) \
	{ .type = OPTION_DURATION, .long_name = (l), .argh = (a), \
	  .value = (v), .min = (lo), .max = (hi), .help = (h) }
#define OPT_CALLBACK(s, l, v, a, fn, h) \
	{ .type = OPTION_CALLBACK, .short_name = (s), .long_name = (l), \
	  .argh = (a), .value = (v), .cb = (fn), .help = (h) }
#define OPT_INCLUDE(t, heading) \
	{ .type = OPTION_INCLUDE, .include = (t), .help = (heading) }

/* A command: its name, usage lines ('\n' between), description, table. */
struct opt_cmd {
	const char *name;
	const char *usage;	/* after "pbs-livemount NAME ", per line */
	const char *desc;	/* printed as it is, after a blank line */
	const struct opt *opts;
};

#define OPT_HELP_SHOWN 1

/*
 * Parse @argv[1..@argc) of command @cmd (@argv[0] is the command's own
 * name).  Options may come anywhere before "--"; "-" alone is an
 * argument.  The positional arguments are moved, in order, to
 * argv[1..1 + *@nargs).  -h and --help print the help to stdout.
 * 0; OPT_HELP_SHOWN (help printed: exit 0); or EXIT_USAGE after one
 * line on stderr: "pbs-livemount CMD: unknown option '--x'
 * (pbs-livemount CMD --help)".
 */
int opt_parse(const struct opt_cmd *cmd, int argc, char **argv, int *nargs);
/*
 * opt_parse() for a command's entry point: true to go on; false when
 * the command ends now, with exit code *@code (0 after the help).
 */
bool opt_parse_main(const struct opt_cmd *cmd, int argc, char **argv,
		    int *nargs, int *code);
void opt_print_help(const struct opt_cmd *cmd, FILE *out);
/* "pbs-livemount CMD: <message> (pbs-livemount CMD --help)"; EXIT_USAGE. */
int opt_usage_error(const char *cmd, const char *fmt, ...) PRINTF_FMT(2, 3);
/* "16M", "4096", "23.5G": exact where a unit divides @v, else rounded. */
void opt_format_size(uint64_t v, char *out, size_t len);

#endif
