/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The option parser behind every command (opt.h).  Hand-written rather
 * than getopt_long(3) because getopt accepts any unambiguous prefix of a
 * long option ("--target" for "--target-zeroed"), which would let a
 * future option change what an existing command line means; the table
 * also gives the --help text, so the two cannot drift apart.
 *
 * Accepted forms, as GNU getopt accepts them: "--name", "--name=VALUE",
 * "--name VALUE", "-x", "-xVALUE", "-x VALUE", clustered short flags
 * ("-qf"), options after arguments, and "--" to end the options.
 * No state outside the call; main thread only.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opt.h"
#include "util.h"
#include "banned.h"

#define HELP_COL 26

void opt_list_release(struct opt_list *l)
{
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

bool opt_parse_main(const struct opt_cmd *cmd, int argc, char **argv,
		    int *nargs, int *code)
{
	int ret = opt_parse(cmd, argc, argv, nargs);

	*code = ret == OPT_HELP_SHOWN ? 0 : ret;
	return !ret;
}

int opt_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "pbs-livemount %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (pbs-livemount %s --help)\n", cmd);
	return EXIT_USAGE;
}

void opt_format_size(uint64_t v, char *out, size_t len)
{
	static const char units[] = "KMGT";

	for (int u = 3; u >= 0; u--) {
		uint64_t m = 1ull << (10 * (u + 1));

		if (v < m)
			continue;
		if (v % m)
			snprintf(out, len, "%.1f%c", (double)v / (double)m,
				 units[u]);
		else
			snprintf(out, len, "%llu%c",
				 (unsigned long long)(v / m), units[u]);
		return;
	}
	snprintf(out, len, "%llu", (unsigned long long)v);
}

/* The row named @name (long, or short when @len is 0), or NULL. */
static const struct opt *find(const struct opt *t, const char *name,
			      size_t len, char short_name)
{
	for (; t->type != OPTION_END; t++) {
		const struct opt *o;

		if (t->type == OPTION_INCLUDE) {
			o = find(t->include, name, len, short_name);
			if (o)
				return o;
			continue;
		}
		if (short_name && t->short_name == short_name)
			return t;
		if (!short_name && t->long_name &&
		    strlen(t->long_name) == len &&
		    !strncmp(t->long_name, name, len))
			return t;
	}
	return NULL;
}

/* "--name" or "-x", for messages. */
static void opt_label(const struct opt *o, char *out, size_t len)
{
	if (o->long_name)
		snprintf(out, len, "--%s", o->long_name);
	else
		snprintf(out, len, "-%c", o->short_name);
}

static int bounds_error(const struct opt *o, uint64_t v, bool size,
			char *why, size_t len)
{
	char lo[32];
	char hi[32];

	if (size) {
		opt_format_size(o->min, lo, sizeof(lo));
		opt_format_size(o->max, hi, sizeof(hi));
	} else {
		snprintf(lo, sizeof(lo), "%llu", (unsigned long long)o->min);
		snprintf(hi, sizeof(hi), "%llu", (unsigned long long)o->max);
	}
	if (v < o->min && o->max)
		snprintf(why, len, "takes %s to %s", lo, hi);
	else if (v < o->min)
		snprintf(why, len, "takes at least %s", lo);
	else
		snprintf(why, len, "too large: at most %s", hi);
	return -ERANGE;
}

static bool in_bounds(const struct opt *o, uint64_t v)
{
	return v >= o->min && (!o->max || v <= o->max);
}

/* Apply row @o with argument @arg (NULL for a flag). */
static int apply(const struct opt *o, const char *arg, char *why, size_t len)
{
	uint64_t v;
	int ret;

	switch (o->type) {
	case OPTION_BOOL:
		*(bool *)o->value = true;
		return 0;
	case OPTION_STRING:
		*(const char **)o->value = arg;
		return 0;
	case OPTION_PATH:
		free(*(char **)o->value);
		*(char **)o->value = abs_path(arg);
		return 0;
	case OPTION_LIST: {
		struct opt_list *l = o->value;

		l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
		l->v[l->n++] = arg;
		return 0;
	}
	case OPTION_UINT:
		if (parse_u64(arg, &v) || v > UINT32_MAX) {
			snprintf(why, len, "bad number '%s'", arg);
			return -EINVAL;
		}
		if (!in_bounds(o, v))
			return bounds_error(o, v, false, why, len);
		*(unsigned int *)o->value = (unsigned int)v;
		return 0;
	case OPTION_SIZE:
		ret = parse_size(arg, &v);
		if (ret == -ERANGE) {
			snprintf(why, len, "'%s' is too large", arg);
			return ret;
		}
		if (ret) {
			snprintf(why, len, "bad size '%s' (a number of "
				 "bytes, or with K, M, G, T: 64M, 1.5G)", arg);
			return ret;
		}
		if (!in_bounds(o, v))
			return bounds_error(o, v, true, why, len);
		*(uint64_t *)o->value = v;
		return 0;
	case OPTION_DURATION:
		ret = parse_duration_ms(arg, &v);
		if (ret == -ERANGE) {
			snprintf(why, len, "'%s' is too long", arg);
			return ret;
		}
		if (ret || !in_bounds(o, v)) {
			snprintf(why, len, "bad duration '%s' (seconds, or "
				 "with ms, s, m, h: 30, 500ms, 2m)", arg);
			return -EINVAL;
		}
		*(uint64_t *)o->value = v;
		return 0;
	case OPTION_CALLBACK:
		return o->cb(o->value, arg, why, len);
	default:
		snprintf(why, len, "internal error: bad option row");
		return -EINVAL;
	}
}

static int option_error(const char *cmd, const struct opt *o, const char *why)
{
	char l[64];

	opt_label(o, l, sizeof(l));
	return opt_usage_error(cmd, "%s: %s", l, why);
}

/* One "--name[=value]" at argv[*i]; *@help: it was --help. */
static int parse_long(const struct opt_cmd *cmd, int argc, char **argv,
		      int *i, bool *help)
{
	const char *s = argv[*i] + 2;
	const char *eq = strchr(s, '=');
	size_t n = eq ? (size_t)(eq - s) : strlen(s);
	const struct opt *o;
	const char *arg = NULL;
	char why[256];

	if (n == 4 && !strncmp(s, "help", 4) && !eq) {
		*help = true;
		return 0;
	}
	o = find(cmd->opts, s, n, 0);
	if (!o)
		return opt_usage_error(cmd->name, "unknown option '--%.*s'",
				       (int)n, s);
	if (!o->argh && eq)
		return opt_usage_error(cmd->name, "--%s takes no value",
				       o->long_name);
	if (o->argh) {
		if (eq) {
			arg = eq + 1;
		} else if (*i + 1 < argc) {
			arg = argv[++*i];
		} else {
			return opt_usage_error(cmd->name, "--%s needs a value "
					       "(%s)", o->long_name, o->argh);
		}
	}
	why[0] = '\0';
	if (apply(o, arg, why, sizeof(why)))
		return option_error(cmd->name, o, why);
	return 0;
}

/* One cluster "-xyz" or "-oVALUE" at argv[*i]. */
static int parse_short(const struct opt_cmd *cmd, int argc, char **argv,
		       int *i, bool *help)
{
	const char *s = argv[*i] + 1;
	char why[256];

	for (; *s; s++) {
		const struct opt *o;
		const char *arg = NULL;

		if (*s == 'h') {
			*help = true;
			return 0;
		}
		o = find(cmd->opts, NULL, 0, *s);
		if (!o)
			return opt_usage_error(cmd->name, "unknown option "
					       "'-%c'", *s);
		if (o->argh) {
			if (s[1]) {
				arg = s + 1;
			} else if (*i + 1 < argc) {
				arg = argv[++*i];
			} else {
				return opt_usage_error(cmd->name, "-%c needs a "
						       "value (%s)", *s,
						       o->argh);
			}
		}
		why[0] = '\0';
		if (apply(o, arg, why, sizeof(why)))
			return option_error(cmd->name, o, why);
		if (arg)
			break;
	}
	return 0;
}

int opt_parse(const struct opt_cmd *cmd, int argc, char **argv, int *nargs)
{
	char **pos = xcalloc(argc + 1, sizeof(*pos));
	bool help = false;
	bool done = false;
	int n = 0;
	int ret = 0;

	for (int i = 1; i < argc && !ret && !help; i++) {
		const char *a = argv[i];

		if (done || a[0] != '-' || !a[1])
			pos[n++] = argv[i];
		else if (!strcmp(a, "--"))
			done = true;
		else if (a[1] == '-')
			ret = parse_long(cmd, argc, argv, &i, &help);
		else
			ret = parse_short(cmd, argc, argv, &i, &help);
	}
	if (help && !ret) {
		opt_print_help(cmd, stdout);
		ret = OPT_HELP_SHOWN;
	}
	memcpy(argv + 1, pos, n * sizeof(*pos));
	*nargs = n;
	free(pos);
	return ret;
}

/* One row's help: the names, padded to HELP_COL, then the text. */
static void print_row(const struct opt *o, FILE *out)
{
	char left[128];
	const char *h = o->help ? o->help : "";
	int n;

	if (o->short_name && o->long_name)
		n = snprintf(left, sizeof(left), "  -%c, --%s", o->short_name,
			     o->long_name);
	else if (o->long_name)
		n = snprintf(left, sizeof(left), "  --%s", o->long_name);
	else
		n = snprintf(left, sizeof(left), "  -%c", o->short_name);
	if (o->argh)
		snprintf(left + n, sizeof(left) - n, " %s", o->argh);
	fputs(left, out);
	n = (int)strlen(left);
	if (n >= HELP_COL - 1) {
		fputc('\n', out);
		n = 0;
	}
	for (;;) {
		size_t l = strcspn(h, "\n");

		fprintf(out, "%*s%.*s\n", HELP_COL - n, "", (int)l, h);
		n = 0;
		if (!h[l])
			break;
		h += l + 1;
	}
}

/* *@first: nothing printed yet, so a heading needs no blank line. */
static void print_rows(const struct opt *t, FILE *out, bool *first)
{
	for (; t->type != OPTION_END; t++) {
		if (t->type != OPTION_INCLUDE) {
			print_row(t, out);
			*first = false;
			continue;
		}
		if (t->help)
			fprintf(out, "%s%s\n", *first ? "" : "\n", t->help);
		print_rows(t->include, out, first);
	}
}

void opt_print_help(const struct opt_cmd *cmd, FILE *out)
{
	const char *u = cmd->usage;
	bool first = true;

	for (;;) {
		size_t l = strcspn(u, "\n");

		fprintf(out, "%s pbs-livemount %s %.*s\n",
			first ? "usage:" : "      ", cmd->name, (int)l, u);
		first = false;
		if (!u[l])
			break;
		u += l + 1;
	}
	if (cmd->desc)
		fprintf(out, "\n%s", cmd->desc);
	fputc('\n', out);
	first = true;
	print_rows(cmd->opts, out, &first);
	fprintf(out, "  -h, --help%*sthis help\n", HELP_COL - 12, "");
}
