// SPDX-License-Identifier: GPL-2.0
/* kmodsim depmod fixture: a second exporter of kmcy_shared (depmod gives it to one of them). */
#include <linux/module.h>
#include <linux/init.h>

int kmcy_shared(int x)
{
	return -x;
}
EXPORT_SYMBOL(kmcy_shared);

int kmcy_e_fn(int x)
{
	return x + 5;
}
EXPORT_SYMBOL_GPL(kmcy_e_fn);

static int __init kmcy_e_init(void)
{
	return 0;
}

module_init(kmcy_e_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim depmod fixture: leaf e");
