// SPDX-License-Identifier: GPL-2.0
/* kmodsim depmod fixture: one half of the kmcy_a <-> kmcy_b cycle. */
#include <linux/module.h>
#include <linux/init.h>

extern int kmcy_b_fn(int x);

int kmcy_a_val = 7;
EXPORT_SYMBOL_GPL(kmcy_a_val);

int kmcy_a_fn(int x)
{
	return x + kmcy_a_val;
}
EXPORT_SYMBOL(kmcy_a_fn);

static int __init kmcy_a_init(void)
{
	return kmcy_b_fn(0) < 0;
}

module_init(kmcy_a_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim depmod fixture: cycle a");
MODULE_ALIAS("devname:kmcy");
MODULE_ALIAS("char-major-10-250");
MODULE_ALIAS("kmcy-a-[ab]*");
MODULE_SOFTDEP("pre: kmcy_d post: kmcy_e");
