// SPDX-License-Identifier: GPL-2.0
/* kmodsim depmod fixture: the other half of the kmcy_a <-> kmcy_b cycle, also using kmcy_d. */
#include <linux/module.h>
#include <linux/init.h>

extern int kmcy_a_fn(int x);
extern int kmcy_a_val;
extern int kmcy_d_fn(int x);

int kmcy_b_fn(int x)
{
	return kmcy_a_fn(x) + kmcy_a_val + kmcy_d_fn(x);
}
EXPORT_SYMBOL(kmcy_b_fn);

static int __init kmcy_b_init(void)
{
	return 0;
}

module_init(kmcy_b_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim depmod fixture: cycle b");
