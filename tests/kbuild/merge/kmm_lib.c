// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: a library object (exports, no init/exit of its own). */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>

static const char kmm_banner[] = "kmodsim merge fixture";
static int kmm_table[64] = { 1, 2, 3 };
int kmm_counter;
EXPORT_SYMBOL_GPL(kmm_counter);

int kmm_sum(int n)
{
	int i, s = 0;

	for (i = 0; i < n && i < 64; i++)
		s += kmm_table[i];
	return s;
}
EXPORT_SYMBOL_GPL(kmm_sum);

char *kmm_dup(const char *s)
{
	pr_info("kmm: duplicating %s (%s)\n", s ? s : "(null)", kmm_banner);
	return kstrdup(s, GFP_KERNEL);
}
EXPORT_SYMBOL(kmm_dup);

MODULE_LICENSE("GPL");
