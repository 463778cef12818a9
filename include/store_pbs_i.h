/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_STORE_PBS_I_H
#define PBSLM_STORE_PBS_I_H

#include <stdbool.h>
#include <stddef.h>

#include "store.h"

/*
 * Inside the PBS backend: store_pbs.c (the API, the reader sessions)
 * and store_pbs_repo.c (the repository string, where the secret comes
 * from).
 */

/* The setting that holds the password or token secret. */
#define STORE_PBS_SECRET "password"

/* PBS's name characters only, 1 to @n of them (a backup id, a
 * datastore). */
bool store_pbs_safe_id(const char *s, size_t n);
/* struct store_backend.credentials of the PBS backend. */
int store_pbs_credentials(struct store_conf *conf,
			  const struct store_env *env);

#endif
