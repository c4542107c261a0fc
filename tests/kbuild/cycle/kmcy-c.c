// SPDX-License-Identifier: GPL-2.0
/* kmodsim depmod fixture: a dash in the file name (module kmcy_c), upstream of the a/b cycle, and a
 * devname alias without a major/minor alias (depmod reports it and leaves it out of modules.devname). */
#include <linux/module.h>
#include <linux/init.h>

extern int kmcy_a_fn(int x);

int kmcy_c_fn(int x)
{
	return kmcy_a_fn(x) * 2;
}
EXPORT_SYMBOL_GPL(kmcy_c_fn);

static int __init kmcy_c_init(void)
{
	return 0;
}

module_init(kmcy_c_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim depmod fixture: dash in the file name");
MODULE_ALIAS("devname:kmcy-c");
MODULE_ALIAS("kmcy-c");
MODULE_ALIAS("kmcy-c");
MODULE_SOFTDEP("pre: kmcy_a");
