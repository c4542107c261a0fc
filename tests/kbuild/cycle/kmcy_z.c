// SPDX-License-Identifier: GPL-2.0
/* kmodsim depmod fixture: the kmcy_x -> kmcy_y -> kmcy_z -> kmcy_x cycle (z uses x). */
#include <linux/module.h>
#include <linux/init.h>

extern int kmcy_x_fn(int x);

int kmcy_z_fn(int x)
{
	return x > 0 ? kmcy_x_fn(x - 1) : 0;
}
EXPORT_SYMBOL(kmcy_z_fn);

static int __init kmcy_z_init(void)
{
	return 0;
}

module_init(kmcy_z_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim depmod fixture: cycle z");
