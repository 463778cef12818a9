/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_BANNED_H
#define PBSLM_BANNED_H

/*
 * Functions that invite overflows or hidden global state.  Included by
 * every .c after the system headers; use snprintf, strtoull with checks,
 * gmtime_r and localtime_r instead.
 */
#define BANNED(func) sorry_##func##_is_a_banned_function

#undef strcpy
#define strcpy(x, y) BANNED(strcpy)
#undef strcat
#define strcat(x, y) BANNED(strcat)
#undef sprintf
#define sprintf(...) BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) BANNED(vsprintf)
#undef strtok
#define strtok(x, y) BANNED(strtok)
#undef atoi
#define atoi(x) BANNED(atoi)
#undef gmtime
#define gmtime(x) BANNED(gmtime)
#undef localtime
#define localtime(x) BANNED(localtime)

#endif
